"""``fuse_for_inference``: fold every BatchNorm and swap in the inference modules."""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Type, TypeVar

import torch
from torch import nn

from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from . import kernels
from .modules import FusedBasicBlock, FusedBottleneck, FusedConvNormAct, FusedLinear, FusedWindowAttention

M = TypeVar("M", bound=nn.Module)

_FUSED: Dict[type, type] = {
    ConvNormAct: FusedConvNormAct,
    Bottleneck: FusedBottleneck,
    BasicBlock: FusedBasicBlock,
    LocalWindowAttention: FusedWindowAttention,
}


@torch.no_grad()
def fold_batch_norm(module: ConvNormAct) -> None:
    """Fold the eval-mode BatchNorm of a :class:`ConvNormAct` into its convolution, in place (the
    BatchNorm becomes an identity)."""
    bn, conv = module.bn, module.conv
    if not isinstance(bn, nn.BatchNorm2d):
        return
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    module.conv = fused
    module.bn = nn.Identity()


def _with_kernels(x: torch.Tensor, run: Callable[[], Any]) -> Any:
    """``run()`` with the kernels allowed for input ``x``; a traced or compiled graph holds the
    public ops only, so tracers and compilers never enter the kernel context."""
    if kernels.tracing():
        return run()
    with kernels.kernels_for(x):
        return run()


class FusedModel:
    """Mixed into the class of a fused model: runs the kernels for finite inputs only (NaN and Inf
    take the public ops, which propagate them), and refuses training."""

    is_fused = True

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return _with_kernels(x, lambda: super(FusedModel, self).forward(x, *args, **kwargs))

    def forward_features(self, x: torch.Tensor) -> Any:
        return _with_kernels(x, lambda: super(FusedModel, self).forward_features(x))

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(
                "this model was fused for inference (BatchNorm folded into the convolutions) and cannot be "
                "trained; train the unfused model and fuse a copy for inference"
            )
        return super().train(False)  # type: ignore[misc]


@functools.lru_cache(maxsize=None)
def _fused_class(cls: type) -> type:
    return type(f"Fused{cls.__name__}", (FusedModel, cls), {"__module__": cls.__module__})


@torch.no_grad()
def fuse_for_inference(model: M) -> M:
    """Eval mode, every BatchNorm folded into its convolution, the fused inference modules swapped
    in (irreversible; returns ``model``). Outputs equal the unfused model's to about 1e-6 relative,
    NaN and Inf included; ``HRFORMER_FAST_PATH=0`` keeps the public PyTorch ops."""
    if getattr(model, "is_fused", False):
        return model
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, ConvNormAct):
            fold_batch_norm(module)
        fused_type = _FUSED.get(type(module))
        if fused_type is not None:
            module.__class__ = fused_type
        if isinstance(module, FusedWindowAttention):
            module.gather_bias()
            for lin in (module.qkv, module.proj):
                if type(lin) is nn.Linear:
                    lin.__class__ = FusedLinear
    model.__class__ = _fused_class(type(model))
    return model

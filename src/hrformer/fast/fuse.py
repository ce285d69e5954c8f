"""``fuse_for_inference``: fold every BatchNorm, swap in the inference modules, optionally cast to bf16."""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Dict, Optional, TypeVar

import torch
from torch import nn

from ..errors import InputError
from ..heads.ocr import OCRHead
from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from . import cpu, kernels
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
    take the public ops, which propagate them), casts fp32 inputs to a reduced-precision model's
    dtype and its outputs back (``fuse_for_inference(dtype=...)``), refuses training, and pickles
    (``torch.save(model)``, ``copy.deepcopy``, DataLoader workers) as the fused model it is."""

    is_fused = True
    # Set on the instance by fuse_for_inference(dtype=...): fp32 inputs are cast to the parameters'
    # dtype at entry and the outputs back to fp32 at exit.
    casts_io = False

    def _compute_dtype(self, x: torch.Tensor) -> Optional[torch.dtype]:
        """The dtype to run ``x`` in, or None to run it as given."""
        if not self.casts_io or not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
            return None
        dtype = next(self.parameters()).dtype  # type: ignore[attr-defined]
        return None if dtype == x.dtype else dtype

    def _run(self, x: torch.Tensor, fn: Callable[[torch.Tensor], Any]) -> Any:
        dtype = self._compute_dtype(x)
        if dtype is None:
            return _with_kernels(x, lambda: fn(x))
        # The finiteness check sees the fp32 input; the layers then run in ``dtype``.
        return cast_floats(_with_kernels(x, lambda: fn(x.to(dtype))), x.dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self._run(x, lambda t: super(FusedModel, self).forward(t, *args, **kwargs))

    def _input_dtype_advice(self, given: torch.dtype, params: torch.dtype) -> str:
        if not self.casts_io:
            return super()._input_dtype_advice(given, params)  # type: ignore[misc]
        return (
            f"input dtype {given}: this model was fused for {params} inference and takes float32 images (cast "
            f"at its entry) or {params} ones; convert the input with x.float()"
        )

    def forward_features(self, x: torch.Tensor) -> Any:
        return self._run(x, lambda t: super(FusedModel, self).forward_features(t))

    def forward_head(self, feats: Any, *args: Any, **kwargs: Any) -> Any:
        first = feats[0] if isinstance(feats, (list, tuple)) and feats else feats
        dtype = self._compute_dtype(first)
        if dtype is None:
            return super().forward_head(feats, *args, **kwargs)  # type: ignore[misc]
        return cast_floats(super().forward_head(cast_floats(feats, dtype), *args, **kwargs), first.dtype)  # type: ignore[misc]

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(
                "this model was fused for inference (BatchNorm folded into the convolutions) and cannot be "
                "trained; train the unfused model and fuse a copy for inference"
            )
        return super().train(False)  # type: ignore[misc]

    def __reduce_ex__(self, protocol: int):
        # The fused class is built per model class at run time, so pickle cannot find it by name:
        # pickle the unfused class (importable) and rebuild the fused one from it on load.
        return _unpickle_fused, (_unfused_class(type(self)),), dict(self.__dict__)


def cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating-point tensor in it (nested lists, tuples, dicts) cast to ``dtype``."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        items = [cast_floats(v, dtype) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return type(value)((k, cast_floats(v, dtype)) for k, v in value.items())
    return value


@functools.lru_cache(maxsize=None)
def _fused_class(cls: type) -> type:
    name = f"Fused{cls.__name__}"
    return type(name, (FusedModel, cls), {"__module__": cls.__module__, "__qualname__": name})


def _unfused_class(fused: type) -> type:
    return next(c for c in fused.__mro__ if c is not fused and not issubclass(c, FusedModel))


def _unpickle_fused(cls: type) -> nn.Module:
    """An empty instance of the fused class of ``cls``; pickle then restores its ``__dict__``."""
    fused = _fused_class(cls)
    return fused.__new__(fused)


def _check_dtype(dtype: Optional[torch.dtype]) -> None:
    if dtype not in (None, torch.float32, torch.bfloat16):
        raise InputError(f"dtype must be None (keep the model's), torch.float32 or torch.bfloat16, got {dtype!r}")


def _warn_without_native_bf16(model: nn.Module) -> None:
    p = next(model.parameters(), None)
    if p is None or p.device.type != "cpu" or cpu.native_bf16(cpu.cpu_flags()):
        return
    warnings.warn(
        "hrformer: fuse_for_inference(dtype=torch.bfloat16) on a CPU without native bf16 (no AMX or "
        f"AVX512-BF16 among the flags of '{cpu.cpu_model()}'): every bf16 product is emulated with fp32 "
        "instructions plus conversions, so this model will run slower than the fp32 one (dtype=None). "
        "Use bf16 on CPUs with AMX or AVX512-BF16, or a GPU.",
        UserWarning, stacklevel=3,
    )


@torch.no_grad()
def fuse_for_inference(model: M, dtype: Optional[torch.dtype] = None) -> M:
    """Eval mode, every BatchNorm folded into its convolution, the fused inference modules swapped
    in (irreversible; returns ``model``). Outputs equal the unfused model's to about 1e-6 relative,
    NaN and Inf included; ``HRFORMER_FAST_PATH=0`` keeps the public PyTorch ops.

    ``dtype=torch.bfloat16``: BatchNorm folded in fp32, then the weights cast to bf16; the model
    takes fp32 images and returns fp32 outputs (cast at its entry and exit), within about 3e-2
    relative of fp32 (the OCR head stays fp32: see :data:`KEEP_FP32`). Faster only on CPUs with
    native bf16 (AMX, AVX512-BF16) or on GPUs; on other CPUs it warns. ``None`` keeps the model's
    dtype."""
    _check_dtype(dtype)
    if getattr(model, "is_fused", False):
        if dtype is not None and dtype != next(model.parameters()).dtype:
            if dtype != torch.bfloat16 or getattr(model, "casts_io", False):
                raise InputError(
                    f"this model is already fused in {next(model.parameters()).dtype}; fuse a fresh copy of the "
                    f"unfused model with dtype={dtype}"
                )
            _to_dtype(model, dtype)
        return model
    model.eval()
    if dtype is not None:
        model.float()  # fold in fp32 whatever the model's dtype
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
    model.eval()  # the folded convolutions and identities are new modules, created in training mode
    if dtype is not None:
        _to_dtype(model, dtype)
    return model


# Modules kept in fp32 in a reduced-precision model, their inputs cast up: the OCR head's spatial
# softmax over all pixels and its object attention lose ~4% of the logits' range in bf16 (0.2-0.8%
# with the head in fp32; the backbone in bf16 alone stays within 1.3%).
KEEP_FP32 = (OCRHead,)


def _inputs_to_fp32(module: nn.Module, args: Any, kwargs: Any) -> Any:
    return cast_floats(args, torch.float32), kwargs


def _to_dtype(model: nn.Module, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16:
        _warn_without_native_bf16(model)
    model.to(dtype)
    for module in model.modules():
        if isinstance(module, KEEP_FP32):
            module.float()
            module.register_forward_pre_hook(_inputs_to_fp32, with_kwargs=True)
    model.casts_io = True  # type: ignore[attr-defined]

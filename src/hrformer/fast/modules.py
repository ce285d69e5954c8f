"""Convolutional inference modules that :func:`hrformer.fast.fuse_for_inference` puts in place of the
reference layers (the window attention is in :mod:`hrformer.fast.attention`, the transformer block
in :mod:`hrformer.fast.block`).

Each is built from a reference module by ``from_reference`` (BatchNorm folded into the convolution,
the other parameters shared) and calls :mod:`hrformer.fast.kernels`, which fall back to the public
ops wherever a kernel may not run. Outputs equal the reference layers' to about 1e-6 relative.
State-dict keys are the reference's, less the folded BatchNorms.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from ..layers.fusion import UpsamplePath, upsample
from . import kernels


@torch.no_grad()
def folded_conv(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` for an eval-mode BatchNorm ``bn`` (``conv`` itself
    when ``bn`` is not a BatchNorm). Folded in the weights' dtype."""
    if not isinstance(bn, nn.BatchNorm2d):
        return conv
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.eval()


class FusedConvNormAct(nn.Module):
    """``act(conv(x))``, the BatchNorm of a :class:`ConvNormAct` folded into ``conv``; one oneDNN
    kernel where allowed. What the kernels need besides the tensors (post-op, operator arguments,
    the size from which oneDNN pays) is read from ``conv`` and ``act`` on first use and again
    whenever either is replaced.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    @classmethod
    def from_reference(cls, module: ConvNormAct) -> "FusedConvNormAct":
        return cls(folded_conv(module.conv, module.bn), module.act)

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if name in ("conv", "act"):
            self.__dict__.pop("_plan", None)
            self.__dict__.pop("_matrix", None)
            self.__dict__.pop("_packed", None)

    def __getstate__(self) -> Dict[str, Any]:
        return kernels.forget_packed_weights(self.__dict__)

    def plan(self) -> Tuple[Optional[str], kernels.ConvGeometry]:
        """(oneDNN post-op of ``act`` or None, ``conv``'s geometry), kept until ``conv`` or ``act``
        is replaced."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self.__dict__["_plan"] = (kernels.onednn_attr(self.act), kernels.conv_geometry(self.conv))
        return plan

    def matrix(self) -> Optional[torch.Tensor]:
        """``conv``'s weight as an (out, in) matrix if ``conv`` is a 1x1 convolution without stride,
        padding or groups (a linear layer on channels-last tokens), else None. The view is kept
        while it shares the weight's memory (in-place edits reach it; a new weight or a cast makes
        a new view)."""
        if not self.plan()[1].matmul:
            return None
        weight = self._modules["conv"]._parameters.get("weight")
        if weight is None or not weight.is_contiguous():
            return None
        kept = self.__dict__.get("_matrix")
        if kept is None or kept[0] is not weight or kept[1].data_ptr() != weight.data_ptr() or kept[1].dtype != weight.dtype:
            with torch.inference_mode(False), torch.no_grad():
                kept = self.__dict__["_matrix"] = (weight, weight.detach().view(weight.shape[0], weight.shape[1]))
        return kept[1]

    def matmul_faster(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward_tokens` on (B, H, W, C) tokens like ``x`` should run this unit as one
        oneDNN matmul (a 1x1 unit whose matmul measured faster than its convolution,
        :func:`kernels.onednn_matmul_faster`), for a caller whose kernels are on."""
        attr = self.plan()[0]
        matrix = None if attr is None else self.matrix()
        if matrix is None:
            return False
        bias = self._modules["conv"]._parameters.get("bias")
        return kernels.onednn_matmul_faster(x, matrix, bias, attr, lambda: self._forward_as_map(x), "conv", self)

    def forward_tokens(self, x: torch.Tensor, as_matmul: bool) -> torch.Tensor:
        """:meth:`forward` on (B, H, W, C) tokens (a channels-last map's permuted view), for a caller
        whose kernels are on: one oneDNN matmul if ``as_matmul`` (what :meth:`matmul_faster` said)
        and the unit is still a matrix product in ``x``'s dtype, else the convolution. Returns
        (B, H, W, C')."""
        attr = self.plan()[0] if as_matmul else None
        if attr is not None:
            matrix = self.matrix()
            if matrix is not None and matrix.dtype == x.dtype:
                return kernels.onednn_matmul(x, matrix, self._modules["conv"]._parameters.get("bias"), attr, self)
        return self._forward_as_map(x)

    def _forward_as_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x.permute(0, 3, 1, 2), True).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor, kernels_on: Optional[bool] = None) -> torch.Tensor:
        """``kernels_on``: :func:`kernels.active(x) <hrformer.fast.kernels.active>` where the caller
        has it (checked here otherwise)."""
        attr, geometry = self.plan()
        conv = self._modules["conv"]  # not self.conv: nn.Module's attribute fallback costs ~1 us
        if attr is None:
            return self.act(conv(x))
        return kernels.conv_act(x, conv, attr, geometry, kernels_on, self)


def conv_norm_act(unit: nn.Module, x: torch.Tensor, kernels_on: Optional[bool] = None) -> torch.Tensor:
    """``unit(x)`` for a :class:`FusedConvNormAct` (or an identity) without the module call: the
    fused FFN's three units cost one Python call each instead of three. ``kernels_on``: see
    :meth:`FusedConvNormAct.forward` (a chain of units checks once)."""
    return unit.forward(x, kernels_on) if type(unit) is FusedConvNormAct else unit(x)


class FusedUpsamplePath(FusedConvNormAct):
    """:class:`UpsamplePath` with its BatchNorm folded: the 1x1 convolution as a kernel call, then the
    same upsampling.

    Shapes: (B, in_chs, h, w) -> (B, out_chs, H, W) for a target size (H, W).
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module, scale: int, mode: str) -> None:
        super().__init__(conv, act)
        self.scale, self.mode = scale, mode

    @classmethod
    def from_reference(cls, module: UpsamplePath) -> "FusedUpsamplePath":
        return cls(folded_conv(module.conv, module.bn), module.act, module.scale, module.mode)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return upsample(super().forward(x), self.scale, self.mode, size)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode}"


class FusedBottleneck(nn.Module):
    """:class:`Bottleneck` with its last convolution, residual add and ReLU as one kernel.

    Shapes: (B, in_chs, H, W) -> (B, 4 * planes, H, W).
    """

    def __init__(
        self, conv1: FusedConvNormAct, conv2: FusedConvNormAct, conv3: FusedConvNormAct, downsample: nn.Module
    ) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = conv1, conv2, conv3
        self.downsample = downsample

    @classmethod
    def from_reference(cls, module: Bottleneck) -> "FusedBottleneck":
        convs = [FusedConvNormAct.from_reference(c) for c in (module.conv1, module.conv2, module.conv3)]
        shortcut = module.downsample
        return cls(*convs, FusedConvNormAct.from_reference(shortcut) if isinstance(shortcut, ConvNormAct) else shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv3 = self.conv3
        return kernels.conv_add_act(
            self.conv2(self.conv1(x)), self.downsample(x), conv3.conv, "relu", conv3.plan()[1], conv3
        )


class FusedBasicBlock(nn.Module):
    """:class:`BasicBlock` with its second convolution, residual add and ReLU as one kernel.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, conv1: FusedConvNormAct, conv2: FusedConvNormAct) -> None:
        super().__init__()
        self.conv1, self.conv2 = conv1, conv2

    @classmethod
    def from_reference(cls, module: BasicBlock) -> "FusedBasicBlock":
        return cls(FusedConvNormAct.from_reference(module.conv1), FusedConvNormAct.from_reference(module.conv2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2
        return kernels.conv_add_act(self.conv1(x), x, conv2.conv, "relu", conv2.plan()[1], conv2)


class FusedLinear(nn.Linear):
    """:class:`torch.nn.Linear` through oneDNN's matmul where it pays."""

    @classmethod
    def from_reference(cls, module: nn.Linear) -> "FusedLinear":
        fused = cls(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
        fused.weight, fused.bias = module.weight, module.bias  # shared, not copied
        return fused

    def __getstate__(self) -> Dict[str, Any]:
        return kernels.forget_packed_weights(self.__dict__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self)

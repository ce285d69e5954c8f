"""Inference modules that :func:`hrformer.fast.fuse_for_inference` puts in place of the reference layers.

Each is built from a reference module by ``from_reference`` (BatchNorm folded into the convolution,
the other parameters shared) and calls :mod:`hrformer.fast.kernels`, which fall back to the public
ops wherever a kernel may not run. Outputs equal the reference layers' to about 1e-6 relative.
State-dict keys are the reference's, less the folded BatchNorms.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from . import kernels

EXPLICIT_MAX_BYTES = 16 << 20


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
    kernel where allowed.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    @classmethod
    def from_reference(cls, module: ConvNormAct) -> "FusedConvNormAct":
        return cls(folded_conv(module.conv, module.bn), module.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attr = kernels.onednn_attr(self.act)
        if attr is None:
            return self.act(self.conv(x))
        return kernels.conv_act(x, self.conv, attr)


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
        return kernels.conv_add_act(self.conv2(self.conv1(x)), self.downsample(x), self.conv3.conv, "relu")


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
        return kernels.conv_add_act(self.conv1(x), x, self.conv2.conv, "relu")


class FusedLinear(nn.Linear):
    """:class:`torch.nn.Linear` through oneDNN's matmul where it pays."""

    @classmethod
    def from_reference(cls, module: nn.Linear) -> "FusedLinear":
        fused = cls(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
        fused.weight, fused.bias = module.weight, module.bias  # shared, not copied
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self)


# ATen's CPU flash-attention kernel is compiled per instruction set. With its AVX2 code the explicit
# softmax beats it (2-core AMD EPYC: 6-10% of the whole HRFormer-T/S forward at batch 8, fp32); with
# its AVX-512 code it wins (2-core Xeon: explicit 4-6% slower in fp32, 7-9% in bf16, T/S batch 1 and
# 8). So the explicit path is kept where it measured faster: fp32 on AVX2 CPUs.
EXPLICIT_ISA = ("AVX2",)
# Read once: the instruction set ATen dispatches to is fixed for the process, and torch.compile
# cannot trace the call (it returns a string).
CPU_CAPABILITY = torch.backends.cpu.get_cpu_capability()


def explicit_attention_here() -> bool:
    """Whether this CPU's ATen kernels (``torch.backends.cpu.get_cpu_capability()``) are those on
    which the explicit softmax measured faster than the flash kernel."""
    return CPU_CAPABILITY in EXPLICIT_ISA


def _explicit_pays(q: torch.Tensor) -> bool:
    """Explicit attention beats torch's CPU flash kernel on AVX2 CPUs (see :data:`EXPLICIT_ISA`) for
    fp32 head dims up to 32 while the (B*nW, heads, N, N) maps stay within a few MB; with
    HRFormer-B's head dim 39 the flash kernel is as fast or faster."""
    b, heads, n, head_dim = q.shape
    return (
        explicit_attention_here() and q.device.type == "cpu" and q.dtype == torch.float32 and head_dim <= 32
        and b * heads * n * n * q.element_size() <= EXPLICIT_MAX_BYTES
    )


class FusedWindowAttention(LocalWindowAttention):
    """Window attention whose relative position bias is gathered from the table once per version of
    the table (not per call), and, on AVX2 CPUs with the fast path on, the explicit softmax where it
    beats the flash kernel.

    The gathered bias is a cache, never state: it is gathered again whenever the table is another
    tensor or was changed in place since (``load_state_dict``, ``table.mul_(2)`` under ``no_grad``,
    an optimizer step: all bump the tensor's version counter), or moved to another device or dtype.
    Edits through ``table.data`` bypass the version counter and are not seen. Traced and compiled
    graphs gather from the table, as the reference layer.
    """

    # (table, its version counter, its data pointer) when the cached bias was gathered.
    _bias_key: Optional[Tuple[torch.Tensor, int, int]] = None
    _bias: Optional[torch.Tensor] = None

    @classmethod
    def from_reference(cls, module: LocalWindowAttention) -> "FusedWindowAttention":
        # Built as a new layer, then every tensor taken from ``module`` (shared, not copied). Not on
        # the meta device: initialising the bias table there costs seconds of decompositions.
        fused = cls(
            module.dim, module.num_heads, window_size=module.window_size, rel_pos_bias=module.rel_pos_bias,
            mask_padding=module.mask_padding, shift_size=module.shift_size, qkv_bias=module.qkv.bias is not None,
            attn_drop=module.attn_drop, proj_drop=module.proj_drop.p,
        )
        fused.qkv = FusedLinear.from_reference(module.qkv)
        fused.proj = FusedLinear.from_reference(module.proj)
        if module.rel_pos_bias:
            fused.relative_position_bias_table = module.relative_position_bias_table
            fused.relative_position_index = module.relative_position_index
        return fused.train(module.training)

    def relative_position_bias(self) -> torch.Tensor:
        table = self.relative_position_bias_table
        if kernels.tracing():
            return super().relative_position_bias()
        key = self._bias_key
        if key is None or key[0] is not table or key[1] != table._version or key[2] != table.data_ptr():
            # Gathered without autograd and outside inference mode, so the cache serves any later call.
            with torch.inference_mode(False), torch.no_grad():
                self._bias = super().relative_position_bias().contiguous()
            self._bias_key = (table, table._version, table.data_ptr())
        return self._bias

    def attend(
        self, q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        # The switch (HRFORMER_FAST_PATH=0, set_fast_path(False)) sends it through the reference path too.
        if self.training or not kernels.fast_path_enabled() or not _explicit_pays(q):
            return super().attend(q, key, v, mask)
        attn = torch.matmul(q, key.transpose(-2, -1)).mul_(self.head_dim**-0.5)
        if mask is not None:
            attn = attn.add_(mask)
        return torch.matmul(attn.softmax(-1), v)

"""Inference modules swapped in by :func:`hrformer.fast.fuse_for_inference`.

Each is a subclass of a reference layer with the same parameters (BatchNorm already folded into the
convolution) whose forward calls :mod:`hrformer.fast.kernels`, which fall back to the public ops
wherever a kernel may not run. Outputs equal the reference layers' to about 1e-6 relative.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..layers.attention import LocalWindowAttention
from ..layers.conv_blocks import BasicBlock, Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from . import kernels

EXPLICIT_MAX_BYTES = 16 << 20


class FusedConvNormAct(ConvNormAct):
    """``act(conv(x))`` with the BatchNorm folded into ``conv``; one oneDNN kernel where allowed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attr = kernels.onednn_attr(self.act)
        if attr is None:
            return self.act(self.conv(x))
        return kernels.conv_act(x, self.conv, attr)


class FusedBottleneck(Bottleneck):
    """The bottleneck with its last convolution, residual add and ReLU as one kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv_add_act(self.conv2(self.conv1(x)), self.downsample(x), self.conv3.conv, "relu")


class FusedBasicBlock(BasicBlock):
    """The basic block with its second convolution, residual add and ReLU as one kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv_add_act(self.conv1(x), x, self.conv2.conv, "relu")


class FusedLinear(nn.Linear):
    """:class:`torch.nn.Linear` through oneDNN's matmul where it pays."""

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
    """Window attention with the relative position bias gathered once (``fused_bias``, not saved)
    and, on AVX2 CPUs with the fast path on, the explicit softmax where it beats the flash kernel."""

    fused_bias: Optional[torch.Tensor]

    def gather_bias(self) -> None:
        bias = super().relative_position_bias().contiguous() if self.rel_pos_bias else None
        self.register_buffer("fused_bias", bias, persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        return self.fused_bias

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

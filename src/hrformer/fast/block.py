"""The inference HRFormer block and its FFN: the reference submodules (and state-dict keys), run
without the module calls of their leaves; with the fast path on, the block's attention runs on
strided window views (:mod:`hrformer.fast.windows`) and its FFN on the (B, H, W, C) tokens: 22 ops
per block with the flash attention kernel, 26 with the explicit product."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct
from ..layers.ffn import ConvFFN
from ..layers.hrformer_block import HRFormerBlock
from ..layers.window import center_padding
from . import kernels
from .attention import FusedWindowAttention
from .modules import FusedConvNormAct, FusedLinear, conv_norm_act
from .windows import crop_view, merge_windows, partition_windows, split_heads


class FusedConvFFN(nn.Module):
    """:class:`ConvFFN` whose three conv-GELU units (BatchNorm folded) run as kernel calls, not
    modules. Same submodules and state-dict keys.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H, W).
    """

    def __init__(self, fc1: nn.Module, dw: nn.Module, fc2: nn.Module) -> None:
        super().__init__()
        self.fc1, self.dw, self.fc2 = fc1, dw, fc2

    @classmethod
    def from_reference(cls, module: ConvFFN) -> "FusedConvFFN":
        return cls(*(_fused_unit(m) for m in (module.fc1, module.dw, module.fc2)))

    def forward(self, x: torch.Tensor, kernels_on: Optional[bool] = None) -> torch.Tensor:
        """``kernels_on``: :func:`kernels.active(x) <hrformer.fast.kernels.active>` where the caller
        has it (checked here otherwise)."""
        units = self._modules  # not self.fc1, ...: nn.Module's attribute fallback costs ~1 us per read
        # the same for the three units: no hook runs between them
        on = kernels.active(x) if kernels_on is None else kernels_on
        return conv_norm_act(units["fc2"], conv_norm_act(units["dw"], conv_norm_act(units["fc1"], x, on), on), on)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on (B, H, W, C) tokens for a caller whose kernels are on, -> (B, H, W,
        C_out): the 1x1 units as oneDNN matmuls on the tokens where that is faster, the depth-wise
        one on their channels-last view; no layout change between the units."""
        units = self._modules
        return _tokens_unit(units["fc2"], _tokens_unit(units["dw"], _tokens_unit(units["fc1"], x)))


def _tokens_unit(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``unit`` on (B, H, W, C) tokens: a fused unit decides matmul or convolution itself (a
    depth-wise one always convolves), any other module runs on the channels-last view."""
    kind = type(unit)
    if kind is FusedConvNormAct:
        return unit.forward_tokens(x)
    if kind is nn.Identity:
        return x
    return unit(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _fused_unit(module: nn.Module) -> nn.Module:
    return FusedConvNormAct.from_reference(module) if type(module) is ConvNormAct else module


class FusedHRFormerBlock(nn.Module):
    """:class:`HRFormerBlock` for inference: the same submodules and state-dict keys, without the
    stochastic-depth identities and the module calls of its leaves.

    With the fast path on (:func:`hrformer.fast.kernels.active`) and a :class:`FusedWindowAttention`
    without shifted windows, the attention runs inline on strided views: the padded map partitioned
    into windows in one copy, the heads split and merged as views, the output projection
    on the padded map before the crop (all per token, so the same arithmetic as the reference).
    Otherwise its submodules run as in the reference block.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, norm1: nn.Module, attn: nn.Module, norm2: nn.Module, ffn: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.ffn = norm1, attn, norm2, ffn

    @classmethod
    def from_reference(cls, module: HRFormerBlock) -> "FusedHRFormerBlock":
        # The attention and the FFN are replaced in turn by fuse_for_inference's walk.
        return cls(module.norm1, module.attn, module.norm2, module.ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Submodules read from the module dict: nn.Module's attribute fallback costs ~1 us per read.
        modules = self._modules
        attn = modules["attn"]
        if type(attn) is not FusedWindowAttention or attn.shift_size or not kernels.active(x):
            return self.forward_modules(x)
        b, c, h, w = x.shape
        window = attn.window_size
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        t = _layer_norm(modules["norm1"], x)
        pads = center_padding(h, w, window)
        top, bottom, left, right = pads
        if any(pads):
            t = F.pad(t, (0, 0, left, right, top, bottom))
        t = t.contiguous()  # a no-op for the ops above
        rows, cols = t.shape[1] // window, t.shape[2] // window
        attn_modules = attn._modules
        # The kernels are on for this block (checked above): its linears and FFN do not check again.
        q, key, v = split_heads(_linear(attn_modules["qkv"], partition_windows(t, window)), attn.num_heads)
        mask = attn.kept_mask(b, h, w, pads, q.dtype, q.device)
        out = attn.attend_fastest(q, key, v, mask)
        out = _linear(attn_modules["proj"], merge_windows(out, b, rows, cols, window))
        x = x + (crop_view(out, pads) if any(pads) else out)
        y = _layer_norm(modules["norm2"], x)
        ffn = modules["ffn"]
        if type(ffn) is FusedConvFFN:
            return (x + ffn.forward_tokens(y)).permute(0, 3, 1, 2)
        return x.permute(0, 3, 1, 2) + ffn(y.permute(0, 3, 1, 2))

    def forward_modules(self, x: torch.Tensor) -> torch.Tensor:
        """The reference block's forward on the fused submodules."""
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        x = x + self.attn(_layer_norm(self.norm1, x))
        y = self.ffn(_layer_norm(self.norm2, x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return (x + y).permute(0, 3, 1, 2)


def _layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(norm) is nn.LayerNorm:
        # torch.layer_norm, not F.layer_norm: the same op without the Python wrapper's checks
        return torch.layer_norm(x, norm.normalized_shape, *kernels.weight_and_bias(norm), norm.eps, False)
    return norm(x)


def _linear(lin: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)`` inside a fused block whose kernels are on."""
    return kernels.linear(x, lin, True) if type(lin) is FusedLinear else lin(x)

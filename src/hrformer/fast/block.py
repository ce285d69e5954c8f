"""The inference HRFormer block and its FFN: the reference submodules (and state-dict keys), run
without the module calls of their leaves."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct
from ..layers.ffn import ConvFFN
from ..layers.hrformer_block import HRFormerBlock
from .modules import FusedConvNormAct, conv_norm_act


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_norm_act(self.fc2, conv_norm_act(self.dw, conv_norm_act(self.fc1, x)))


def _fused_unit(module: nn.Module) -> nn.Module:
    return FusedConvNormAct.from_reference(module) if type(module) is ConvNormAct else module


class FusedHRFormerBlock(nn.Module):
    """:class:`HRFormerBlock` for inference: the same submodules and state-dict keys, without the
    stochastic-depth identities, LayerNorm computed in place of a module call.

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
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        x = x + self.attn(_layer_norm(self.norm1, x))
        y = self.ffn(_layer_norm(self.norm2, x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return (x + y).permute(0, 3, 1, 2)


def _layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(norm) is nn.LayerNorm:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return norm(x)

"""The HRFormer transformer block."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from .attention import LocalWindowAttention
from .drop_path import DropPath
from .ffn import ConvFFN


class HRFormerBlock(nn.Module):
    """``x + Attn(LN(x))`` then ``x + FFN(LN(x))``, pre-norm, with stochastic depth.

    Shapes: (B, C, H, W) -> (B, C, H, W). Attention runs channels-last; the FFN runs on a
    channels-first view of the same memory.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        rel_pos_bias: bool = True,
        mask_padding: bool = False,
        shift_size: int = 0,
        ffn_dw: bool = True,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        attn_layer: Callable[..., nn.Module] = LocalWindowAttention,
        ffn_layer: Callable[..., nn.Module] = ConvFFN,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(
            dim, num_heads, window_size=window_size, rel_pos_bias=rel_pos_bias,
            mask_padding=mask_padding, shift_size=shift_size,
        )
        self.norm2 = norm_layer(dim)
        self.ffn = ffn_layer(dim, int(dim * mlp_ratio), dim, use_dw=ffn_dw)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C) view
        x = x + self.drop_path(self.attn(self.norm1(x)))
        y = self.ffn(self.norm2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(y)
        return x.permute(0, 3, 1, 2)

"""The HRFormer feed-forward network with a 3x3 depth-wise convolution."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .conv_norm_act import ConvNormAct


class ConvFFN(nn.Module):
    """1x1 conv, BN, GELU, [3x3 depth-wise conv, BN, GELU,] 1x1 conv, BN, GELU.

    The depth-wise conv exchanges information between neighbouring windows; ``use_dw=False`` is the
    paper's ablation without it (Table 7).

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H, W).
    """

    def __init__(
        self,
        in_chs: int,
        hidden_chs: int,
        out_chs: Optional[int] = None,
        use_dw: bool = True,
        act_layer: Callable[[], nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        out_chs = out_chs or in_chs
        self.fc1 = ConvNormAct(in_chs, hidden_chs, 1, bias=True, act_layer=act_layer)
        self.dw = (
            ConvNormAct(hidden_chs, hidden_chs, 3, groups=hidden_chs, bias=True, act_layer=act_layer)
            if use_dw
            else nn.Identity()
        )
        self.fc2 = ConvNormAct(hidden_chs, out_chs, 1, bias=True, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dw(self.fc1(x)))

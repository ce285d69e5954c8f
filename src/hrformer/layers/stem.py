"""The stem: two stride-2 3x3 convolutions."""

from __future__ import annotations

import torch
from torch import nn

from .conv_norm_act import ConvNormAct


class Stem(nn.Module):
    """Two 3x3 stride-2 conv-BN-ReLU.

    Shapes: (B, in_chans, H, W) -> (B, width, ceil(H/4), ceil(W/4)).
    """

    def __init__(self, in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_chans, width, 3, stride=2, act_layer=nn.ReLU)
        self.conv2 = ConvNormAct(width, width, 3, stride=2, act_layer=nn.ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))

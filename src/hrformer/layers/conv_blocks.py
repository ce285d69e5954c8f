"""Residual convolution blocks of HRNet: bottleneck (stage 1, classification head) and basic."""

from __future__ import annotations

import torch
from torch import nn

from .conv_norm_act import ConvNormAct


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block; ``depthwise=True`` makes the 3x3 depth-wise
    (the classification head's variant). A 1x1 conv + BN projects the shortcut when channels change.

    Shapes: (B, in_chs, H, W) -> (B, 4 * planes, H, W).
    """

    expansion = 4

    def __init__(self, in_chs: int, planes: int, depthwise: bool = False) -> None:
        super().__init__()
        out_chs = planes * self.expansion
        self.conv1 = ConvNormAct(in_chs, planes, 1, act_layer=nn.ReLU)
        self.conv2 = ConvNormAct(planes, planes, 3, groups=planes if depthwise else 1, act_layer=nn.ReLU)
        self.conv3 = ConvNormAct(planes, out_chs, 1)
        self.downsample = ConvNormAct(in_chs, out_chs, 1) if in_chs != out_chs else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


class BasicBlock(nn.Module):
    """HRNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, residual, ReLU.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(dim, dim, 3, act_layer=nn.ReLU)
        self.conv2 = ConvNormAct(dim, dim, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + x)

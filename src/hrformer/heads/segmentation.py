"""Semantic segmentation head (HRNetV2 style)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct


class SegmentationHead(nn.Module):
    """Upsample every map to stride 4 (bilinear), concatenate, 1x1 conv-BN-ReLU, dropout, 1x1 conv.

    Shapes: maps (B, C_i, H_i, W_i) -> (B, num_classes, H_1, W_1) logits at stride 4.
    """

    def __init__(self, in_chs: Sequence[int], num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        width = sum(in_chs)
        self.width = width
        self.fuse = ConvNormAct(width, width, 1, bias=True, act_layer=nn.ReLU)
        self.drop = nn.Dropout2d(drop_rate)
        self.cls = nn.Conv2d(width, num_classes, 1)

    def reset(self, num_classes: int) -> None:
        self.cls = nn.Conv2d(self.width, num_classes, 1)

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        size = feats[0].shape[-2:]
        x = torch.cat(
            [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]],
            dim=1,
        )
        x = self.fuse(x)
        return x if pre_logits else self.cls(self.drop(x))

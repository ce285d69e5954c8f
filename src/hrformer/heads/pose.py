"""Top-down pose head: heatmaps from the highest-resolution map."""

from __future__ import annotations

from typing import List

import torch
from torch import nn


class PoseHead(nn.Module):
    """A 1x1 conv with bias on the stride-4 map (the originals' TopDownSimpleHead / HeatmapHead
    without deconvolutions).

    Shapes: [(B, C_1, H/4, W/4), ...] -> (B, num_keypoints, H/4, W/4).
    """

    def __init__(self, in_chs: int, num_keypoints: int = 17) -> None:
        super().__init__()
        self.in_chs = in_chs
        self.conv = nn.Conv2d(in_chs, num_keypoints, 1)

    def reset(self, num_keypoints: int) -> None:
        self.conv = nn.Conv2d(self.in_chs, num_keypoints, 1)

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        return feats[0] if pre_logits else self.conv(feats[0])

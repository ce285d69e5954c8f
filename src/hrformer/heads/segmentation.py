"""Semantic segmentation head (HRNetV2 style)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct
from .base import Head


def concat_upsampled(feats: List[torch.Tensor], align_corners: bool = False) -> torch.Tensor:
    """Every map resized (bilinear) to the first one's size and concatenated along channels.

    Shapes: maps (B, C_i, H_i, W_i) -> (B, sum C_i, H_1, W_1)."""
    size = feats[0].shape[-2:]
    resized = [F.interpolate(f, size=size, mode="bilinear", align_corners=align_corners) for f in feats[1:]]
    return torch.cat([feats[0], *resized], dim=1)


class SegmentationHead(Head):
    """Upsample every map to stride 4 (bilinear), concatenate, 1x1 conv-BN-ReLU, dropout, 1x1 conv.

    Shapes: maps (B, C_i, H_i, W_i) -> (B, num_outputs, H_1, W_1) logits at stride 4.
    """

    task = "segmentation"
    pipeline_tag = "image-segmentation"
    default_input_size = (512, 1024)
    default_outputs = 19
    classifier_name = "cls"
    predict_task = "segmentation"
    config_defaults = {"multiscale_output": True}

    def __init__(self, in_chs: Sequence[int], num_outputs: int = 19, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_features = sum(in_chs)
        self.num_outputs = num_outputs
        self.fuse = ConvNormAct(self.num_features, self.num_features, 1, bias=True, act_layer=nn.ReLU)
        self.drop = nn.Dropout2d(drop_rate)
        self.cls = self.new_classifier(num_outputs)

    def new_classifier(self, num_outputs: int) -> nn.Module:
        return nn.Conv2d(self.num_features, num_outputs, 1)

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        x = self.fuse(concat_upsampled(feats))
        return x if pre_logits else self.cls(self.drop(x))

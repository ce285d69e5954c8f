"""Top-down pose head: heatmaps from the highest-resolution map."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from ..keypoints import COCO_KEYPOINTS
from .base import Head


class PoseHead(Head):
    """A 1x1 conv with bias on the stride-4 map (the originals' TopDownSimpleHead / HeatmapHead
    without deconvolutions).

    Shapes: [(B, C_1, H/4, W/4), ...] -> (B, num_outputs, H/4, W/4) heatmaps.
    """

    task = "pose"
    pipeline_tag = "keypoint-detection"
    default_input_size = (256, 192)
    output_arg = "num_keypoints"
    default_outputs = 17
    classifier_name = "conv"
    maps_needed = 1
    has_dropout = False
    predict_task = "pose"
    decode_method = "msra"
    config_defaults = {"upsample_mode": "bilinear", "multiscale_output": False}

    @classmethod
    def default_metadata(cls, num_outputs: int) -> Dict[str, Any]:
        return {"keypoint_info": COCO_KEYPOINTS} if num_outputs == len(COCO_KEYPOINTS.names) else {}

    def __init__(self, in_chs: Sequence[int], num_outputs: int = 17, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.num_features = in_chs[0]
        self.num_outputs = num_outputs
        self.conv = self.new_classifier(num_outputs)

    def new_classifier(self, num_outputs: int) -> nn.Module:
        return nn.Conv2d(self.num_features, num_outputs, 1)

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        return feats[0] if pre_logits else self.conv(feats[0])

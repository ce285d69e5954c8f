"""The ImageNet classification head of the original HRFormer."""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence

import torch
from torch import nn

from ..layers.conv_blocks import Bottleneck
from ..layers.conv_norm_act import ConvNormAct
from ..layers.fusion import SeparableDownsample
from .base import Head

HEAD_PLANES = (32, 64, 128, 256)


class ClassificationHead(Head):
    """Per-branch depth-wise bottlenecks to 128/256/512/1024 channels, strided depth-wise-separable
    fusion from high to low resolution, 1x1 conv to ``num_features`` + BN + ReLU, global average
    pool, dropout, linear (``num_outputs=0``: no linear, pooled features).

    Shapes: 4 maps (B, C_i, H_i, W_i) -> (B, num_outputs), or (B, num_features) with ``pre_logits``.
    """

    task = "classification"
    pipeline_tag = "image-classification"
    default_input_size = (224, 224)
    classifier_name = "fc"
    min_outputs = 0
    predict_task = "classification"
    crop_pct = 0.875
    config_defaults = {"upsample_mode": "nearest", "multiscale_output": True}

    @classmethod
    def outputs_in(cls, state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
        found = super().outputs_in(state_dict)
        if found is None and any(k.startswith("head.incre.") for k in state_dict):
            return 0  # num_classes=0: the head without its linear layer
        return found

    def __init__(
        self, in_chs: Sequence[int], num_outputs: int = 1000, drop_rate: float = 0.0, num_features: int = 2048
    ) -> None:
        super().__init__()
        widths = [p * Bottleneck.expansion for p in HEAD_PLANES[: len(in_chs)]]
        self.incre = nn.ModuleList(Bottleneck(c, p, depthwise=True) for c, p in zip(in_chs, HEAD_PLANES))
        self.downsamp = nn.ModuleList(
            SeparableDownsample(widths[i], widths[i + 1], act=True, bias=True) for i in range(len(in_chs) - 1)
        )
        self.final = ConvNormAct(widths[-1], num_features, 1, bias=True, act_layer=nn.ReLU)
        self.num_features = num_features
        self.num_outputs = num_outputs
        self.drop = nn.Dropout(drop_rate)
        self.fc = self.new_classifier(num_outputs)

    def new_classifier(self, num_outputs: int) -> nn.Module:
        return nn.Linear(self.num_features, num_outputs) if num_outputs > 0 else nn.Identity()

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        y = self.incre[0](feats[0])
        for incre, down, f in zip(self.incre[1:], self.downsamp, feats[1:]):
            y = incre(f) + down(y)
        y = self.final(y).mean(dim=(2, 3))
        return y if pre_logits else self.fc(self.drop(y))

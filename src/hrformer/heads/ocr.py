"""Object-contextual representations (OCRNet) head, as the HRFormer paper's segmentation models use it.

What it computes (official ``seg/lib/models/nets/hrt.py``, ``HRT_{SMALL,BASE}_OCR_V2``; restated,
not copied):

1. the four backbone maps resized to the stride-4 map (bilinear, ``align_corners=True``) and
   concatenated (480 channels for HRFormer-S, 1170 for -B);
2. ``aux``: 3x3 conv (bias) -> BN -> ReLU to 512, then the aux classifier (1x1 conv, bias) to K
   classes: the soft object regions;
3. ``bottleneck``: 3x3 conv (bias) -> BN -> ReLU to 512 channels, the pixel representations;
4. spatial gather: softmax of the aux logits over the pixels of each class, one 512-d object
   representation per class (the weighted mean of the pixel representations);
5. ``object_context``: pixel-to-object attention with 256 key channels, queries from the pixels
   (two 1x1 conv-BN-ReLU), keys from the objects (two 1x1 conv-BN-ReLU), values the objects
   projected down (one 1x1 conv-BN-ReLU), logits scaled by 256**-0.5, the result projected back up
   to 512 (one 1x1 conv-BN-ReLU);
6. ``fuse``: concat [context, pixel representations] -> 1x1 conv (bias) -> BN -> ReLU to 512,
   Dropout2d (0.05 in the original);
7. the classifier (1x1 conv, bias) to K classes.

Every convolution has a bias (the original's convolutions keep theirs before BN). Both logits come
at stride 4 and, given ``output_size`` (the model passes its input's), are resized to it with
bilinear ``align_corners=True`` interpolation, as the original does.
"""

from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.conv_norm_act import ConvNormAct
from .base import Head
from .segmentation import concat_upsampled

OCR_CHANNELS = 512
KEY_CHANNELS = 256
OCR_DROPOUT = 0.05


def _cbr(in_chs: int, out_chs: int, kernel_size: int = 1) -> ConvNormAct:
    return ConvNormAct(in_chs, out_chs, kernel_size, bias=True, act_layer=nn.ReLU)


def spatial_gather(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """One representation per class: the pixels' features weighted by the softmax over pixels of
    that class's logits. Shapes: feats (B, C, H, W), logits (B, K, H, W) -> (B, C, K, 1)."""
    probs = torch.softmax(logits.flatten(2), dim=2)  # (B, K, HW)
    objects = torch.bmm(probs, feats.flatten(2).transpose(1, 2))  # (B, K, C)
    return objects.transpose(1, 2).unsqueeze(3)


class ObjectContext(nn.Module):
    """Pixel-to-object attention. Shapes: pixels (B, C, H, W), objects (B, C, K, 1) -> (B, C, H, W)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.pixel = nn.Sequential(_cbr(channels, key_channels), _cbr(key_channels, key_channels))
        self.object = nn.Sequential(_cbr(channels, key_channels), _cbr(key_channels, key_channels))
        self.down = _cbr(channels, key_channels)
        self.up = _cbr(key_channels, channels)

    def forward(self, pixels: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixels.shape
        query = self.pixel(pixels).flatten(2).transpose(1, 2)  # (B, HW, Ck)
        key = self.object(objects).flatten(2)  # (B, Ck, K)
        value = self.down(objects).flatten(2).transpose(1, 2)  # (B, K, Ck)
        attn = torch.softmax(torch.bmm(query, key) * self.key_channels ** -0.5, dim=-1)
        context = torch.bmm(attn, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        return self.up(context)


class OCRClassifiers(nn.Module):
    """The two layers whose size is the number of classes: ``aux`` (soft object regions) and
    ``main`` (the final logits), both 1x1 convs with bias from 512 channels."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.aux = nn.Conv2d(channels, num_classes, 1)
        self.main = nn.Conv2d(channels, num_classes, 1)


class OCRHead(Head):
    """OCRNet head (module docstring).

    ``forward(feats, output_size=None, return_aux=False)``: maps (B, C_i, H_i, W_i) -> logits
    (B, K, H_1, W_1), or (B, K, *output_size) when given; with ``return_aux`` the pair
    ``(logits, aux_logits)``. ``pre_logits`` returns the 512-channel fused features at stride 4.
    ``drop_rate > 0`` replaces the original's 0.05 dropout before the classifier.
    """

    task = "ocr"
    pipeline_tag = "image-segmentation"
    default_input_size = (512, 1024)
    default_outputs = 19
    classifier_name = "cls"
    needs_output_size = True
    predict_task = "segmentation"
    config_defaults = {"upsample_mode": "nearest", "multiscale_output": True}

    @classmethod
    def outputs_in(cls, state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
        weight = state_dict.get("head.cls.main.weight")
        return int(weight.shape[0]) if weight is not None else None

    def __init__(self, in_chs: Sequence[int], num_outputs: int = 19, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_features = sum(in_chs)
        self.num_features = OCR_CHANNELS
        self.num_outputs = num_outputs
        self.aux = _cbr(self.in_features, OCR_CHANNELS, 3)
        self.bottleneck = _cbr(self.in_features, OCR_CHANNELS, 3)
        self.object_context = ObjectContext(OCR_CHANNELS, KEY_CHANNELS)
        self.fuse = _cbr(2 * OCR_CHANNELS, OCR_CHANNELS)
        self.drop = nn.Dropout2d(drop_rate if drop_rate > 0 else OCR_DROPOUT)
        self.cls = self.new_classifier(num_outputs)

    def new_classifier(self, num_outputs: int) -> nn.Module:
        return OCRClassifiers(OCR_CHANNELS, num_outputs)

    def forward(
        self,
        feats: List[torch.Tensor],
        pre_logits: bool = False,
        output_size: Optional[Sequence[int]] = None,
        return_aux: bool = False,
    ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        x = concat_upsampled(feats, align_corners=True)
        aux = self.cls.aux(self.aux(x))
        pixels = self.bottleneck(x)
        context = self.object_context(pixels, spatial_gather(pixels, aux))
        fused = self.fuse(torch.cat([context, pixels], dim=1))
        if pre_logits:
            return fused
        logits = self.cls.main(self.drop(fused))
        if output_size is not None:
            # traced (ONNX export): the sizes are shape ops of the input, keep them dynamic
            size = tuple(output_size) if torch.jit.is_tracing() else tuple(int(s) for s in output_size)
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
            aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=True) if return_aux else aux
        return (logits, aux) if return_aux else logits

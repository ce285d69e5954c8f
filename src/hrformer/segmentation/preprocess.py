"""From a checked RGB image in [0, 1] to the network's input, as the model's ``pretrained_cfg`` says.

The official segmentation weights were trained on images read with OpenCV, so their cfg says
``channel_order="BGR"``; ``mean`` / ``std`` are given in that channel order, for [0, 1] pixels.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..image import load_images
from ..inference import data_config, normalize
from ..weights.pretrained import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["preprocess", "segmentation_cfg"]

_DEFAULT_CFG: Mapping[str, Any] = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "channel_order": "RGB"}


def segmentation_cfg(model: nn.Module) -> Mapping[str, Any]:
    """``model.pretrained_cfg`` (mean, std, channel_order, class_names...), or ImageNet RGB defaults."""
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if cfg is not None else _DEFAULT_CFG


def preprocess(image: Tensor, cfg: Mapping[str, Any]) -> Tensor:
    """RGB image(s) (3, H, W) or (B, 3, H, W), uint8 0-255 or float in [0, 1] -> the normalised float32
    batch (B, 3, H, W) in ``cfg["channel_order"]``: ``(x - mean) / std``.

    The image contract of :mod:`hrformer.image` applies: a float image outside [0, 1] is refused (a
    0-255 float image would give logits ~100x too large and silently change labels).
    """
    images, _ = load_images(image)
    return normalize(torch.stack(images), data_config(cfg))

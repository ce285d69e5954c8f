"""From a checked RGB image in [0, 1] to the network's input, as the model's ``pretrained_cfg`` says.

The official segmentation weights were trained on images read with OpenCV, so their cfg says
``channel_order="BGR"``; ``mean`` / ``std`` are given in that channel order, for [0, 1] pixels.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

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

    A float image outside [0, 1] is refused (a 0-255 float image would give logits ~100x too large
    and silently change labels).
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an RGB image (3, H, W) or batch (B, 3, H, W), got shape {tuple(image.shape)}")
    if image.is_floating_point():
        x = image.float()
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("the image has NaN or Inf pixels; replace them (e.g. torch.nan_to_num) first")
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"a float image must be in [0, 1], got values in [{float(x.min()):g}, {float(x.max()):g}]; "
                             "divide a 0-255 image by 255 (or pass it as uint8)")
    elif image.dtype == torch.uint8:
        x = image.float() / 255.0
    else:
        raise TypeError(f"expected a uint8 or float image, got {image.dtype}; convert it with .to(torch.uint8) "
                        "(0-255) or .float() / 255")
    order = str(cfg.get("channel_order", "RGB")).upper()
    if order == "BGR":
        x = x.flip(1)
    elif order != "RGB":
        raise ValueError(f"unknown channel_order {order!r} in the model's pretrained_cfg (RGB or BGR)")
    mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", IMAGENET_STD), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std

"""From a checked image in [0, 1] to the network's input, as the model's data config says.

The official segmentation weights were trained on images read with OpenCV, so their cfg says
``channel_order="BGR"``; ``mean`` / ``std`` are given in that channel order, for [0, 1] pixels.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import torch
from torch import Tensor, nn

from ..data_config import resolve_data_config
from ..image import load_images
from ..inference import normalize

__all__ = ["preprocess"]


def preprocess(image: Tensor, model_or_cfg: Union[nn.Module, Mapping[str, Any]]) -> Tensor:
    """Image(s) (C, H, W) or (B, C, H, W), uint8 0-255 or float in [0, 1] (RGB for 3 channels) -> the
    normalised float32 batch (B, C, H, W) in the channel order of ``model_or_cfg`` (a model or its
    ``pretrained_cfg``, through :func:`~hrformer.data_config.resolve_data_config`): ``(x - mean) / std``.

    The image contract of :mod:`hrformer.image` applies: a float image outside [0, 1] is refused (a
    0-255 float image would give logits ~100x too large and silently change labels).
    """
    if isinstance(model_or_cfg, nn.Module):
        cfg = resolve_data_config(model_or_cfg)
    else:
        cfg = resolve_data_config(pretrained_cfg=model_or_cfg)
    images, _ = load_images(image, in_chans=cfg["input_size"][0])
    return normalize(torch.stack(images), cfg)

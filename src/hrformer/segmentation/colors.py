"""Label maps as pictures: a colour per class, blended over the image."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["Color", "colorize", "overlay"]

Color = Tuple[int, int, int]


def colorize(labels: Tensor, palette: Sequence[Color]) -> Tensor:
    """(H, W) label map -> (3, H, W) uint8 RGB picture with ``palette[label]`` (cycled if short)."""
    if labels.dim() != 2:
        raise InputError(f"expected a label map (H, W), got shape {tuple(labels.shape)}; colour one image at a time")
    if not len(palette):
        raise InputError("the palette is empty; give one (R, G, B) triple per class")
    table = torch.tensor(list(palette), dtype=torch.uint8, device=labels.device)
    return table[labels.long() % len(table)].permute(2, 0, 1).contiguous()


def overlay(image: Tensor, labels: Tensor, palette: Sequence[Color], alpha: float = 0.5) -> Tensor:
    """The colour label map blended over an RGB image (3, H, W), uint8 0-255 or float in [0, 1]:
    ``(1 - alpha) * image + alpha * colours``, as a (3, H, W) uint8 picture."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be in [0, 1] (0: the image, 1: the colours), got {alpha}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise InputError(f"expected an RGB image (3, H, W), got shape {tuple(image.shape)}")
    if tuple(image.shape[-2:]) != tuple(labels.shape[-2:]):
        raise InputError(f"image {tuple(image.shape[-2:])} and label map {tuple(labels.shape[-2:])} differ in size; "
                         "segment the image you overlay")
    if image.is_floating_point():
        if image.numel() and (float(image.min()) < 0.0 or float(image.max()) > 1.0):
            raise InputError("a float image must be in [0, 1]; divide a 0-255 image by 255 (or pass it as uint8)")
        image = image * 255.0
    colors = colorize(labels, palette).float()
    return ((1 - alpha) * image.float() + alpha * colors).round().clamp(0, 255).to(torch.uint8)

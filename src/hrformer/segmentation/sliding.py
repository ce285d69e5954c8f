"""Sliding-window inference (mmseg's ``slide`` test mode) on a normalised image.

Windows of ``crop = (h, w)`` start every ``stride = (sh, sw)`` pixels; per axis there are
``max(H - h + sh - 1, 0) // sh + 1`` of them and the last one is moved back to end at the image
border (so windows overlap there more), as mmseg places them. Each pixel's logits are the mean over
the windows that cover it (a count map divides the sum).

An image smaller than the crop along an axis is padded at the bottom / right with zeros of the
*normalised* input (= the dataset's mean colour; mmseg's data preprocessor normalises, then pads with
0) up to the crop size, so the network sees crop-sized inputs as in training; the padded part of
the logits is dropped.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = ["slide_logits", "window_count", "window_starts", "windows"]

Window = Tuple[int, int, int, int]  # y1, y2, x1, x2 (end exclusive)


def window_count(size: int, crop: int, stride: int) -> int:
    """The number of windows along one axis of length ``size`` (module docstring)."""
    return max(size - crop + stride - 1, 0) // stride + 1


def window_starts(size: int, crop: int, stride: int) -> List[int]:
    """Start offsets of the windows along one axis of length ``size`` (module docstring)."""
    count = window_count(size, crop, stride)
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(count)]


def windows(height: int, width: int, crop: Tuple[int, int], stride: Tuple[int, int]) -> List[Window]:
    """The (y1, y2, x1, x2) windows covering an image of ``height x width``, row by row."""
    return [(y, min(y + crop[0], height), x, min(x + crop[1], width))
            for y in window_starts(height, crop[0], stride[0])
            for x in window_starts(width, crop[1], stride[1])]


def slide_logits(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    crop: Tuple[int, int],
    stride: Tuple[int, int],
    batch_size: int = 1,
) -> Tensor:
    """Logits (1, K, H, W) float32 of a normalised image ``x`` (1, C, H, W), averaged over windows.

    ``forward`` maps a window batch (N, C, h, w) to logits (N, K, h, w); ``batch_size`` windows
    go through it at a time (more windows: faster on a GPU, more memory).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise InputError(f"slide_logits takes one image (1, C, H, W), got shape {tuple(x.shape)}")
    height, width = x.shape[-2:]
    pad_h, pad_w = max(crop[0] - height, 0), max(crop[1] - width, 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))  # bottom / right, zeros of the normalised input
    boxes = windows(x.shape[-2], x.shape[-1], crop, stride)
    total: Tensor = torch.empty(0)
    count = torch.zeros(1, 1, x.shape[-2], x.shape[-1], dtype=torch.float32, device=x.device)
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first:first + batch_size]
        out = forward(torch.cat([x[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk]))
        if first == 0:
            total = torch.zeros(1, out.shape[1], x.shape[-2], x.shape[-1], dtype=torch.float32, device=x.device)
        for logits, (y1, y2, x1, x2) in zip(out, chunk):
            total[0, :, y1:y2, x1:x2] += logits.float()
            count[:, :, y1:y2, x1:x2] += 1
    total = total[:, :, :height, :width]
    return total.div_(count[:, :, :height, :width])

"""Pure helpers for local-window attention: centred padding, window partition, position index, masks.

All functions work on channels-last maps ``(B, H, W, C)``.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def center_padding(height: int, width: int, window: int) -> Tuple[int, int, int, int]:
    """Padding ``(top, bottom, left, right)`` that makes ``height`` and ``width`` multiples of
    ``window``, split as the originals do: ``pad // 2`` before, the rest after.

    Plain arithmetic, so that under ``torch.jit.trace`` / ONNX export, where the sizes are 0-d
    tensors, the padding is traced as shape-dependent ops instead of being baked in."""
    pad_h = (-height) % window  # = ceil(height / window) * window - height
    pad_w = (-width) % window
    return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


def _has_padding(pads: Tuple[int, int, int, int]) -> bool:
    # When tracing, the pads depend on the input size: always pad/crop (a zero pad is a no-op).
    return torch.jit.is_tracing() or any(pads)


def pad_to_windows(x: torch.Tensor, window: int) -> Tuple[torch.Tensor, Tuple[int, int, int, int]]:
    """Zero-pad a (B, H, W, C) map, centred, to multiples of ``window``; returns the map and the padding."""
    _, height, width, _ = x.shape
    pads = center_padding(height, width, window)
    top, bottom, left, right = pads
    if _has_padding(pads):
        x = F.pad(x, (0, 0, left, right, top, bottom))
    return x, pads


def crop_padding(x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`pad_to_windows`: (B, Hp, Wp, C) -> (B, H, W, C)."""
    top, bottom, left, right = pads
    if _has_padding(pads):
        x = x[:, top : x.shape[1] - bottom, left : x.shape[2] - right]
    return x


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` -> (B * nW, window * window, C), windows in
    row-major order and tokens row-major inside each window."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_unpartition(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    nh, nw = height // window, width // window
    x = windows.reshape(-1, nh, nw, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(window**2, window**2) index into a ((2*window-1)**2, heads) bias table (Swin convention)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def padding_key_mask(
    height: int, width: int, window: int, pads: Tuple[int, int, int, int], device: torch.device
) -> torch.Tensor:
    """(nW, 1, window**2) boolean mask, True for real tokens, over the windows of a padded map."""
    top, bottom, left, right = pads
    valid = torch.zeros(1, height + top + bottom, width + left + right, 1, dtype=torch.bool, device=device)
    valid[:, top : top + height, left : left + width] = True
    return window_partition(valid, window).reshape(-1, 1, window * window)


def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, window**2, window**2) boolean mask for Swin-style shifted windows on a padded (H, W) map
    rolled by ``-shift``: True where query and key come from the same region of the unrolled map."""
    region = torch.zeros(1, height, width, 1, device=device)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[:, hs, ws] = label
            label += 1
    labels = window_partition(region, window).squeeze(-1)  # (nW, window**2)
    return labels[:, :, None] == labels[:, None, :]

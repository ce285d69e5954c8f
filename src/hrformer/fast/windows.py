"""Strided views between (B, H, W, C) maps and (B * nW, heads, N, head_dim) windows for the fused
block: each is one view op (or one copy) where the reference layer's partition, head split, merge
and crop take two to four ops each (at batch 1 the time between ops is a quarter of a forward)."""

from __future__ import annotations

from typing import Tuple

import torch


def window_view(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, Hp, Wp, C) contiguous, sides multiples of ``window`` -> (B, nh, nw, window, window, C)
    view: the windows in row-major order and the tokens row-major inside each window, without a copy
    (a linear layer applied to it writes window-major output)."""
    b, hp, wp, c = x.shape
    return x.as_strided(
        (b, hp // window, wp // window, window, window, c),
        (hp * wp * c, window * wp * c, window * c, wp * c, c, 1), x.storage_offset(),
    )


def split_heads(qkv: torch.Tensor, heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous (..., N, 3 * C) q/k/v tokens of B*nW windows (any leading shape whose last two
    are ``window, window``) -> q, k, v as (B * nW, heads, N, C // heads) views."""
    n = qkv.shape[-2] * qkv.shape[-3]
    c = qkv.shape[-1] // 3
    windows, head_dim = qkv.numel() // (n * 3 * c), c // heads
    return qkv.as_strided(
        (3, windows, heads, n, head_dim), (c, n * 3 * c, head_dim, 3 * c, 1), qkv.storage_offset()
    ).unbind(0)


def merge_windows(out: torch.Tensor, batch: int, rows: int, cols: int, window: int) -> torch.Tensor:
    """(B * nW, heads, N, head_dim) attention outputs (any strides) -> the (B, Hp, Wp, C) map with
    the heads concatenated per token, in one copy; ``rows`` x ``cols`` windows per image."""
    s_win, s_head, s_tok, s_dim = out.stride()
    heads, head_dim = out.shape[1], out.shape[3]
    return out.as_strided(
        (batch, rows, window, cols, window, heads, head_dim),
        (rows * cols * s_win, cols * s_win, window * s_tok, s_win, s_tok, s_head, s_dim), out.storage_offset(),
    ).reshape(batch, rows * window, cols * window, heads * head_dim)


def crop_view(x: torch.Tensor, pads: Tuple[int, int, int, int]) -> torch.Tensor:
    """Contiguous (B, Hp, Wp, C) -> its (B, H, W, C) centre without the ``pads`` (top, bottom, left,
    right), one view op."""
    b, hp, wp, c = x.shape
    top, bottom, left, right = pads
    return x.as_strided(
        (b, hp - top - bottom, wp - left - right, c), (hp * wp * c, wp * c, c, 1),
        x.storage_offset() + (top * wp + left) * c,
    )

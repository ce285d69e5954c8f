"""Strided views between (B, H, W, C) maps and (B * nW, heads, N, head_dim) windows for the fused
block: each is one view op (or one copy) where the reference layer's partition, head split, merge
and crop take two to four ops each (at batch 1 the time between ops is a quarter of a forward)."""

from __future__ import annotations

from typing import Tuple

import torch


def partition_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, Hp, Wp, C) contiguous, sides multiples of ``window`` -> (B * nW, window * window, C)
    contiguous: the windows in row-major order and the tokens row-major inside each window, as one
    strided view and one copy. (A linear layer on the view itself, without the copy, ran 1.6-2.2x
    slower in ATen's matmul than the copy and the linear together.)"""
    b, hp, wp, c = x.shape
    view = x.as_strided(
        (b, hp // window, wp // window, window, window, c),
        (hp * wp * c, window * wp * c, window * c, wp * c, c, 1), x.storage_offset(),
    )
    return view.reshape(-1, window * window, c)


def split_heads(qkv: torch.Tensor, heads: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous (B * nW, N, 3 * C) q/k/v tokens -> q, k, v as (B * nW, heads, N, C // heads) views."""
    windows, n, c3 = qkv.shape
    c = c3 // 3
    head_dim = c // heads
    return qkv.as_strided(
        (3, windows, heads, n, head_dim), (c, n * c3, head_dim, c3, 1), qkv.storage_offset()
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

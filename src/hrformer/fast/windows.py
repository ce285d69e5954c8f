"""Strided views between (B, H, W, C) maps and (B * nW, heads, N, head_dim) windows for the fused
block: each is one view op (or one copy) where the reference layer's partition, head split, merge
and crop take two to four ops each (at batch 1 the time between ops is a quarter of a forward).
Their arguments depend on the map's shape only: :func:`window_layout` works them out once per shape."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ..layers.window import center_padding

Size = Tuple[int, ...]


class WindowLayout(NamedTuple):
    """How a (B, H, W, C) map is cut into ``window`` x ``window`` windows of ``heads`` heads: the
    arguments of the views below, for one map shape.

    ``pads``: the centre padding (top, bottom, left, right); ``pad``: ``F.pad``'s argument for it
    (None: no padding); ``windows``: size and stride of the padded map's (B, rows, cols, window,
    window, C) view; ``heads``: size and stride of the (3, B * nW, heads, N, head_dim) q/k/v view of
    the qkv tokens; ``batch``, ``rows``, ``cols``: images and windows per column and row; ``crop``:
    size, stride and offset of the padded map's (B, H, W, C) centre."""

    pads: Tuple[int, int, int, int]
    pad: Optional[Size]
    windows: Tuple[Size, Size]
    heads: Tuple[Size, Size]
    batch: int
    rows: int
    cols: int
    window: int
    crop: Tuple[Size, Size, int]


def window_layout(shape: Size, window: int, heads: int) -> WindowLayout:
    """The :class:`WindowLayout` of a (B, H, W, C) map of ``shape``."""
    b, h, w, c = shape
    top, bottom, left, right = center_padding(h, w, window)
    hp, wp = h + top + bottom, w + left + right
    rows, cols, n = hp // window, wp // window, window * window
    padded = bool(top or bottom or left or right)
    head_dim = c // heads
    return WindowLayout(
        pads=(top, bottom, left, right),
        pad=(0, 0, left, right, top, bottom) if padded else None,
        windows=((b, rows, cols, window, window, c), (hp * wp * c, window * wp * c, window * c, wp * c, c, 1)),
        heads=((3, b * rows * cols, heads, n, head_dim), (c, n * 3 * c, head_dim, 3 * c, 1)),
        batch=b, rows=rows, cols=cols, window=window,
        crop=((b, h, w, c), (hp * wp * c, wp * c, c, 1), (top * wp + left) * c),
    )


def partition_windows(x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """The padded (B, Hp, Wp, C) map -> its windows as a contiguous (B, rows, cols, window, window,
    C) tensor, the windows in row-major order and the tokens row-major inside each window (the
    memory of the reference's (B * nW, N, C) windows; a linear layer takes it as it is), in one op: a
    copy, or a view of a map one window wide. (A linear layer on a strided view, without the copy,
    ran 1.6-2.2x slower in ATen's matmul than the copy and the linear together.)"""
    x = x.contiguous()
    return _contiguous_strided(x, *layout.windows, x.storage_offset())


def split_heads(qkv: torch.Tensor, layout: WindowLayout) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous q/k/v tokens of the windows (..., 3 * C) -> q, k, v as (B * nW, heads, N,
    C // heads) views."""
    return qkv.as_strided(*layout.heads).unbind(0)


def merge_windows(out: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """(B * nW, heads, N, head_dim) attention outputs (any strides) -> the padded map with the heads
    concatenated per token, contiguous, as (B, rows, window, cols, window, C) (the memory of
    (B, Hp, Wp, C)): one op where the heads of a token are already adjacent in memory (the flash
    kernel's output; a copy, or a view for a map one window wide), two otherwise (a copy and a view)."""
    s_win, s_head, s_tok, s_dim = out.stride()
    heads, head_dim = out.shape[1], out.shape[3]
    batch, rows, cols, window = layout.batch, layout.rows, layout.cols, layout.window
    size = (batch, rows, window, cols, window)
    stride = (rows * cols * s_win, cols * s_win, window * s_tok, s_win, s_tok)
    if s_head == head_dim * s_dim:
        return _contiguous_strided(out, (*size, heads * head_dim), (*stride, s_dim), out.storage_offset())
    merged = _contiguous_strided(out, (*size, heads, head_dim), (*stride, s_head, s_dim), out.storage_offset())
    return merged.view(*size, heads * head_dim)


def _contiguous_strided(x: torch.Tensor, size: Size, stride: Size, offset: int) -> torch.Tensor:
    """``x.as_strided(size, stride, offset)`` as a contiguous tensor, in one op: the view itself
    where it is contiguous, else its copy."""
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return torch.as_strided_copy(x, size, stride, offset)
        expected *= n
    return x.as_strided(size, stride, offset)


def crop_view(x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """The padded map, contiguous (any shape with the memory of (B, Hp, Wp, C)) -> its (B, H, W, C)
    centre, one view op."""
    size, stride, offset = layout.crop
    return x.as_strided(size, stride, x.storage_offset() + offset)

"""Multi-head self-attention inside non-overlapping local windows."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .window import (
    crop_padding,
    pad_to_windows,
    padding_key_mask,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_unpartition,
)


class LocalWindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window x window`` windows.

    Maps whose sides are not multiples of ``window`` are zero-padded, centred, and cropped back
    afterwards. As in the original HRFormer code the padded tokens take part in attention unless
    ``mask_padding=True``. ``shift_size > 0`` rolls the padded map first (Swin-style shifted
    windows) and masks attention across the rolled seams.

    Shapes: (B, H, W, C) -> (B, H, W, C), any H and W.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int = 7,
        rel_pos_bias: bool = True,
        mask_padding: bool = False,
        shift_size: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if not 0 <= shift_size < window_size:
            raise InputError(f"shift_size must be in [0, window_size), got {shift_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mask_padding = mask_padding
        self.attn_drop = attn_drop
        # q, k and v rows stacked in that order, each split into contiguous per-head groups.
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
            self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        else:
            self.relative_position_bias_table = None

    @property
    def rel_pos_bias(self) -> bool:
        return self.relative_position_bias_table is not None

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, window**2, window**2) additive bias."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        return bias.reshape(n, n, self.num_heads).permute(2, 0, 1)

    def _allowed(
        self, height: int, width: int, pads: Tuple[int, int, int, int], device: torch.device
    ) -> Optional[torch.Tensor]:
        """(nW, N, N) boolean 'may attend' mask over the windows of the padded map, or None."""
        k = self.window_size
        padded = torch.jit.is_tracing() or any(pads)  # traced: the pads depend on the input size
        if not self.shift_size and not (self.mask_padding and padded):
            return None
        n = k * k
        hp, wp = height + pads[0] + pads[1], width + pads[2] + pads[3]
        allowed = torch.ones((hp // k) * (wp // k), n, n, dtype=torch.bool, device=device)
        if self.mask_padding and padded:
            valid = padding_key_mask(height, width, k, pads, device)
            if self.shift_size:
                valid = window_partition(
                    torch.roll(window_unpartition(valid.transpose(1, 2), k, hp, wp),
                               (-self.shift_size, -self.shift_size), (1, 2)), k
                ).transpose(1, 2)
            allowed = allowed & valid
        if self.shift_size:
            allowed = allowed & shifted_window_mask(hp, wp, k, self.shift_size, device)
        # A query always sees itself, so rows made only of masked keys cannot produce NaNs.
        return allowed | torch.eye(n, dtype=torch.bool, device=device)

    def attention_mask(
        self, batch: int, height: int, width: int, pads: Tuple[int, int, int, int], dtype: torch.dtype,
        device: torch.device,
    ) -> Optional[torch.Tensor]:
        """Additive float mask for ``scaled_dot_product_attention`` on (B*nW, heads, N, hd) windows:
        (1, heads, N, N) bias only, (B*nW, heads or 1, N, N) with a window mask, or None.

        Always 4-D: torch's CPU flash kernel takes 4-D masks only (3-D ones fall back to the slower
        math kernel)."""
        mask: Optional[torch.Tensor] = None
        allowed = self._allowed(height, width, pads, device)
        if allowed is not None:
            mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
            mask = mask.unsqueeze(1)  # (nW, 1, N, N)
        if self.relative_position_bias_table is not None:
            bias = self.relative_position_bias().to(dtype)
            mask = bias if mask is None else mask + bias
        if mask is None:
            return None
        if allowed is None:
            return mask.unsqueeze(0) if mask.dim() == 3 else mask
        # The window mask differs per window: repeat it over the batch (windows are batch-major).
        return mask.expand(batch, *mask.shape).flatten(0, 1)

    def attend(
        self, q: torch.Tensor, key: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """softmax(q k^T / sqrt(hd) + mask) v on (B*nW, heads, N, hd) windows."""
        dropout = self.attn_drop if self.training else 0.0
        if mask is not None and mask.requires_grad and not dropout:
            # SDPA has no fused kernel for a mask that needs a gradient (the learned bias in
            # training) and falls back to a slower math path than these three ops.
            attn = torch.matmul(q * self.head_dim**-0.5, key.transpose(-2, -1)) + mask
            return torch.matmul(attn.softmax(-1), v)
        return F.scaled_dot_product_attention(q, key, v, attn_mask=mask, dropout_p=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        k, s = self.window_size, self.shift_size
        x, pads = pad_to_windows(x, k)
        hp, wp = x.shape[1], x.shape[2]
        if s:
            x = torch.roll(x, (-s, -s), (1, 2))
        windows = window_partition(x, k)  # (B*nW, N, C)
        n = k * k
        qkv = self.qkv(windows).reshape(-1, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, key, v = qkv.unbind(0)  # (B*nW, heads, N, hd) strided views: SDPA reads them in place
        mask = self.attention_mask(b, h, w, pads, q.dtype, q.device)
        out = self.attend(q, key, v, mask).transpose(1, 2).reshape(-1, n, c)
        out = self.proj_drop(self.proj(out))
        x = window_unpartition(out, k, hp, wp)
        if s:
            x = torch.roll(x, (s, s), (1, 2))
        return crop_padding(x, pads)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"rel_pos_bias={self.rel_pos_bias}, shift_size={self.shift_size}, mask_padding={self.mask_padding}"
        )

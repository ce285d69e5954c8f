"""Local-window attention against a direct, loop-based reference of its definition."""

from __future__ import annotations

import math

import pytest
import torch

from hrformer.layers import LocalWindowAttention, center_padding, window_partition, window_unpartition


def reference_attention(attn: LocalWindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Windows of the centred-padded (and rolled) map, one query at a time, with the bias looked up
    from relative coordinates and the allowed keys decided from token positions."""
    b, h, w, c = x.shape
    k, s, heads = attn.window_size, attn.shift_size, attn.num_heads
    hd = c // heads
    top, bottom, left, right = center_padding(h, w, k)
    hp, wp = h + top + bottom, w + left + right
    xp = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    xp[:, top : top + h, left : left + w] = x
    valid = torch.zeros(hp, wp, dtype=torch.bool)
    valid[top : top + h, left : left + w] = True
    # Rolled map: position (r, c) holds the token from ((r + s) % hp, (c + s) % wp).
    src_r = (torch.arange(hp) + s) % hp
    src_c = (torch.arange(wp) + s) % wp
    xr = xp[:, src_r][:, :, src_c]
    valid_r = valid[src_r][:, src_c]

    def region(i: int, size: int) -> int:
        return 0 if i < size - k else (1 if i < size - s else 2)

    qkv = attn.qkv(xr)  # (b, hp, wp, 3c)
    q, kk, v = qkv.split(c, dim=-1)
    out = torch.zeros(b, hp, wp, c)
    table = attn.relative_position_bias_table
    for wr in range(0, hp, k):
        for wc in range(0, wp, k):
            cells = [(wr + i, wc + j) for i in range(k) for j in range(k)]
            for qr, qc in cells:
                for head in range(heads):
                    sl = slice(head * hd, (head + 1) * hd)
                    logits, values = [], []
                    for kr, kc in cells:
                        same_region = not s or (region(qr, hp), region(qc, wp)) == (region(kr, hp), region(kc, wp))
                        key_ok = valid_r[kr, kc] or not attn.mask_padding or (kr, kc) == (qr, qc)
                        if not (same_region and key_ok) and (kr, kc) != (qr, qc):
                            continue
                        logit = (q[:, qr, qc, sl] * kk[:, kr, kc, sl]).sum(-1) / math.sqrt(hd)
                        if table is not None:
                            dr, dc = (qr - wr) - (kr - wr), (qc - wc) - (kc - wc)
                            logit = logit + table[(dr + k - 1) * (2 * k - 1) + (dc + k - 1), head]
                        logits.append(logit)
                        values.append(v[:, kr, kc, sl])
                    weights = torch.softmax(torch.stack(logits, -1), -1)
                    out[:, qr, qc, sl] = (weights.unsqueeze(-1) * torch.stack(values, 1)).sum(1)
    out = attn.proj(out)
    # Undo the roll, then crop.
    unrolled = torch.empty_like(out)
    unrolled[:, src_r[:, None], src_c[None, :]] = out
    return unrolled[:, top : top + h, left : left + w]


@pytest.mark.parametrize(
    "h,w,shift,mask_padding,rel_pos_bias",
    [(7, 7, 0, False, True), (9, 5, 0, False, True), (9, 5, 0, True, True), (10, 12, 3, False, True),
     (10, 12, 3, True, False), (14, 8, 2, True, True)],
)
def test_window_attention_matches_reference(h, w, shift, mask_padding, rel_pos_bias):
    torch.manual_seed(0)
    attn = LocalWindowAttention(8, 2, window_size=7 if shift == 0 else 4, rel_pos_bias=rel_pos_bias,
                                mask_padding=mask_padding, shift_size=shift).eval()
    if rel_pos_bias:
        torch.nn.init.normal_(attn.relative_position_bias_table)
    x = torch.randn(2, h, w, 8)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_padding_is_centred():
    assert center_padding(9, 5, 7) == (2, 3, 1, 1)
    assert center_padding(14, 7, 7) == (0, 0, 0, 0)
    assert center_padding(1, 13, 7) == (3, 3, 0, 1)


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 14 * 21 * 3, dtype=torch.float32).reshape(2, 14, 21, 3)
    windows = window_partition(x, 7)
    assert windows.shape == (2 * 2 * 3, 49, 3)
    torch.testing.assert_close(windows[1], x[0, :7, 7:14].reshape(49, 3))  # row-major windows and tokens
    torch.testing.assert_close(window_unpartition(windows, 7, 14, 21), x)


def test_mask_padding_changes_padded_maps_only():
    torch.manual_seed(0)
    masked = LocalWindowAttention(8, 2, window_size=7, mask_padding=True).eval()
    unmasked = LocalWindowAttention(8, 2, window_size=7, mask_padding=False).eval()
    unmasked.load_state_dict(masked.state_dict())
    with torch.no_grad():
        aligned = torch.randn(1, 14, 7, 8)
        torch.testing.assert_close(masked(aligned), unmasked(aligned))
        padded = torch.randn(1, 9, 5, 8)
        assert not torch.allclose(masked(padded), unmasked(padded))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        LocalWindowAttention(10, 3)
    with pytest.raises(ValueError):
        LocalWindowAttention(8, 2, window_size=7, shift_size=7)

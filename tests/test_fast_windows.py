"""The fused block's strided window views: the same windows, heads and maps as the reference layer's
partition / split / merge / crop, and the same block outputs, for any size, batch and head count."""

from __future__ import annotations

import copy

import pytest
import torch

from hrformer.fast import kernels
from hrformer.fast.block import FusedHRFormerBlock
from hrformer.fast.fuse import fuse_for_inference
from hrformer.fast.windows import crop_view, merge_windows, split_heads, window_view
from hrformer.layers import HRFormerBlock
from hrformer.layers.window import crop_padding, pad_to_windows, window_partition, window_unpartition

SIZES = [(7, 7), (14, 21), (9, 13), (3, 5), (16, 12)]


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("batch, heads", [(1, 1), (2, 3)])
def test_views_match_the_reference_partition_split_merge_and_crop(height, width, batch, heads):
    k, c = 7, 6 * heads
    x = torch.randn(batch, height, width, c)
    padded, pads = pad_to_windows(x, k)
    reference = window_partition(padded, k)  # (B*nW, N, C)
    assert torch.equal(window_view(padded, k).reshape(-1, k * k, c), reference)

    qkv = torch.randn(*window_view(padded, k).shape[:-1], 3 * c)
    expected = qkv.reshape(-1, k * k, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    for got, want in zip(split_heads(qkv, heads), expected):
        assert torch.equal(got, want)

    rows, cols = padded.shape[1] // k, padded.shape[2] // k
    out = torch.randn(reference.shape[0], heads, k * k, c // heads)
    merged = out.transpose(1, 2).reshape(-1, k * k, c)
    for layout in (out, out.transpose(1, 2).contiguous().transpose(1, 2)):  # explicit / flash layouts
        got = merge_windows(layout, batch, rows, cols, k)
        assert torch.equal(got, window_unpartition(merged, k, padded.shape[1], padded.shape[2]))
        assert torch.equal(crop_view(got, pads), crop_padding(got, pads))


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("mask_padding", [False, True])
@pytest.mark.parametrize("heads", [1, 2])
def test_fused_block_inline_attention_equals_its_modules(height, width, mask_padding, heads):
    """The inline path (fast path on) against the block's submodules run as in the reference block,
    on channels-first and channels-last inputs."""
    torch.manual_seed(0)
    block = HRFormerBlock(8 * heads, heads, mask_padding=mask_padding).eval()
    fused = fuse_for_inference(torch.nn.Sequential(copy.deepcopy(block)))[0]
    assert isinstance(fused, FusedHRFormerBlock)
    x = torch.randn(2, 8 * heads, height, width)
    with torch.no_grad():
        want = block(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            with kernels.kernels_for(inp):
                got = fused(inp)
                assert kernels.active(inp) == kernels.fast_path_enabled()
            assert (got - want).abs().max() <= 1e-5 * want.abs().max()
            assert torch.allclose(fused.forward_modules(inp), want, rtol=1e-5, atol=1e-5)

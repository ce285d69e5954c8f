"""The fused inference modules against the reference layers they replace: the block's strided window
views (the same windows, heads and maps as the reference partition / split / merge / crop), the
block, and the fusion across resolutions, for any size, batch and head count."""

from __future__ import annotations

import copy

import pytest
import torch

from hrformer.fast import kernels
from hrformer.fast.block import FusedHRFormerBlock
from hrformer.fast.fuse import fuse_for_inference
from hrformer.fast.fusion import FusedFusion
from hrformer.fast.windows import crop_view, merge_windows, partition_windows, split_heads
from hrformer.layers import Fusion, HRFormerBlock
from hrformer.layers.window import crop_padding, pad_to_windows, window_partition, window_unpartition

SIZES = [(7, 7), (14, 21), (9, 13), (3, 5), (16, 12)]


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("batch, heads", [(1, 1), (2, 3)])
def test_views_match_the_reference_partition_split_merge_and_crop(height, width, batch, heads):
    k, c = 7, 6 * heads
    x = torch.randn(batch, height, width, c)
    padded, pads = pad_to_windows(x, k)
    reference = window_partition(padded, k)  # (B*nW, N, C)
    assert torch.equal(partition_windows(padded, k), reference)

    qkv = torch.randn(reference.shape[0], k * k, 3 * c)
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
@pytest.mark.parametrize("ffn_dw", [True, False])
@pytest.mark.parametrize("matmul_path", ["onednn", "other"])
def test_fused_block_inline_attention_equals_its_modules(height, width, mask_padding, heads, ffn_dw, matmul_path,
                                                         monkeypatch):
    """The inline path (fast path on; the projections and the FFN's 1x1 units as oneDNN matmuls or
    as the ops they replace) against the block's submodules run as in the reference block, with and
    without the FFN's depth-wise convolution, on channels-first and channels-last inputs."""
    monkeypatch.setattr(kernels, "matmul_path", matmul_path)
    torch.manual_seed(0)
    block = HRFormerBlock(8 * heads, heads, mask_padding=mask_padding, ffn_dw=ffn_dw).eval()
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


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("num_outputs", [1, 3])
@pytest.mark.parametrize("custom_act", [False, True])
def test_fused_fusion_equals_the_reference(mode, num_outputs, custom_act, randomise_bn):
    """Every path kind (identity, upsampling, one and two separable downsampling steps), odd sizes,
    kernels on and off; a path or activation of another kind runs as a module."""
    torch.manual_seed(0)
    fusion = randomise_bn(Fusion([4, 6, 8], num_outputs, mode)).eval()
    if custom_act:
        fusion.act = torch.nn.GELU()
    fused = fuse_for_inference(torch.nn.Sequential(copy.deepcopy(fusion)))[0]
    assert isinstance(fused, FusedFusion)
    xs = [torch.randn(2, c, h, w).contiguous(memory_format=torch.channels_last) for c, h, w in ((4, 13, 15), (6, 7, 8), (8, 4, 4))]
    with torch.no_grad():
        want = fusion(xs)
        with kernels.kernels_for(xs[0]):
            got = fused(xs)
    assert len(got) == len(want) == num_outputs
    for g, w in zip(got, want):
        assert g.shape == w.shape and (g - w).abs().max() <= 1e-5 * w.abs().max()

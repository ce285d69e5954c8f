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
from hrformer.fast.hr_module import FusedHRModule
from hrformer.fast.windows import crop_view, merge_windows, partition_windows, split_heads, window_layout
from hrformer import HRFormer
from hrformer.layers import Fusion, HRFormerBlock
from hrformer.layers.window import crop_padding, pad_to_windows, window_partition, window_unpartition
from parity import SMALL, X, outputs

SIZES = [(7, 7), (14, 21), (9, 13), (3, 5), (16, 12)]


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("batch, heads", [(1, 1), (2, 3)])
def test_views_match_the_reference_partition_split_merge_and_crop(height, width, batch, heads):
    k, c = 7, 6 * heads
    x = torch.randn(batch, height, width, c)
    padded, pads = pad_to_windows(x, k)
    layout = window_layout(x.shape, k, heads)
    assert layout.pads == pads
    if layout.pad is not None:
        assert torch.equal(torch.nn.functional.pad(x, layout.pad), padded)
    reference = window_partition(padded, k)  # (B*nW, N, C)
    assert torch.equal(partition_windows(padded, layout).reshape(reference.shape), reference)

    qkv = torch.randn(reference.shape[0], k * k, 3 * c)
    expected = qkv.reshape(-1, k * k, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    for got, want in zip(split_heads(qkv, layout), expected):
        assert torch.equal(got, want)

    out = torch.randn(reference.shape[0], heads, k * k, c // heads)
    merged = out.transpose(1, 2).reshape(-1, k * k, c)
    for strided in (out, out.transpose(1, 2).contiguous().transpose(1, 2)):  # explicit / flash layouts
        got = merge_windows(strided, layout)
        assert got.is_contiguous()
        got = got.reshape(padded.shape)
        assert torch.equal(got, window_unpartition(merged, k, padded.shape[1], padded.shape[2]))
        assert torch.equal(crop_view(got, layout), crop_padding(got, pads))


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


def _branches(model):
    return [branch for m in model.modules() if isinstance(m, FusedHRModule) for branch in m.branches]


@pytest.mark.usefixtures("one_thread")
def test_hooked_blocks_run_their_hooks_with_the_same_outputs(randomise_bn):
    """A fused branch runs block after block on tokens, without module calls, only where nothing
    would hook a call: a forward hook on a block, a pre-hook on a branch and a global hook all run
    once per call, with the outputs they see in the reference model."""
    torch.manual_seed(0)
    model = randomise_bn(HRFormer(SMALL, head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    x = X[:, :, :40, :36]
    expected = outputs(model, x)[0]
    block_path = next(name for name, m in model.named_modules() if isinstance(m, HRFormerBlock))
    branch_path = block_path.rsplit(".", 1)[0]
    seen = {}
    for name, m in (("reference", model), ("fused", fused)):
        calls = seen[name] = []
        handles = [
            m.get_submodule(block_path).register_forward_hook(lambda mod, args, out, c=calls: c.append(("block", out.clone()))),
            m.get_submodule(branch_path).register_forward_pre_hook(lambda mod, args, c=calls: c.append(("branch", args[0].clone()))),
        ]
        out = outputs(m, x)[0]
        for h in handles:
            h.remove()
        assert (out - expected).abs().max() <= 1e-5 * expected.abs().max(), name
    assert [k for k, _ in seen["fused"]] == [k for k, _ in seen["reference"]] == ["branch", "block"]
    for (_, got), (_, want) in zip(seen["fused"], seen["reference"]):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda mod, args, out: calls.append(1) if isinstance(mod, FusedHRFormerBlock) else None)
    try:
        out = outputs(fused, x)[0]
    finally:
        handle.remove()
    assert len(calls) == sum(len(branch) for branch in _branches(fused))
    assert (out - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.usefixtures("one_thread")
def test_fused_model_keeps_one_plan_per_input_shape(randomise_bn):
    """What a fused block works out per input shape (padding, views, kernel choices, masks) is kept
    per shape: images of several sizes and batches, in any order, give the unfused model's outputs;
    the plans are not pickled or deep-copied."""
    torch.manual_seed(0)
    model = randomise_bn(HRFormer(SMALL, head="pose").eval())
    fused = copy.deepcopy(model).fuse_for_inference()
    sizes = [(1, 40, 36), (2, 33, 21), (1, 40, 36), (1, 21, 33), (2, 33, 21)]
    for batch, h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(h * w))
        expected, out = outputs(model, x)[0], outputs(fused, x)[0]
        assert (out - expected).abs().max() <= 1e-5 * expected.abs().max(), (batch, h, w)
    blocks = [m for m in fused.modules() if isinstance(m, FusedHRFormerBlock)]
    if kernels.fast_path_enabled():
        assert len(blocks[0].__dict__["_plans"]) == len(set(sizes))  # the first, full-resolution block
    assert all("_plans" not in b.__dict__ for b in copy.deepcopy(fused).modules() if isinstance(b, FusedHRFormerBlock))

"""Outputs come back in the caller's memory format, as timm's: an NCHW-contiguous input gives
contiguous outputs (``.view(B, -1)`` works, ``.numpy()`` keeps its layout), a channels-last input
channels-last outputs; the values do not depend on it (the network runs channels-last inside)."""

from __future__ import annotations

import copy

import pytest
import torch

from hrformer import HRFormer
from hrformer.heads import HEADS
from parity import SMALL

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.randn(2, 3, 40, 32, generator=torch.Generator().manual_seed(0))
CHANNELS_LAST = X.contiguous(memory_format=torch.channels_last)


def _tensors(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _model(head, fused):
    torch.manual_seed(0)
    if head == "features_only":
        model = HRFormer(SMALL, head=None, out_indices=(0, 2))
    else:
        config = SMALL.with_(**HEADS[head].config_defaults) if head else SMALL
        model = HRFormer(config, head=head, **({HEADS[head].output_arg: 5} if head else {}))
    model.eval()
    return copy.deepcopy(model).fuse_for_inference() if fused else model


@pytest.mark.parametrize("head, fused", [
    *((h, False) for h in ["classification", "pose", "segmentation", "ocr", None, "features_only"]),
    *((h, True) for h in ["classification", "ocr", "features_only"]),  # fused: the kernels' outputs too
])
def test_outputs_in_the_inputs_memory_format_with_the_same_values(head, fused):
    model = _model(head, fused)
    kwargs = {"return_aux": True} if head == "ocr" else {}
    with torch.no_grad():
        plain = _tensors(model(X, **kwargs))
        last = _tensors(model(CHANNELS_LAST, **kwargs))
    assert len(plain) == len(last) == {"ocr": 2, None: 4, "features_only": 2}.get(head, 1)
    for a, b in zip(plain, last):
        assert a.is_contiguous() and a.view(a.shape[0], -1).shape[1] == a[0].numel()
        assert torch.equal(a, b)
        if b.dim() == 4:
            assert b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous()
        else:
            assert b.is_contiguous()  # logits: (B, classes)


@pytest.mark.parametrize("fused", [False, True], ids=["reference", "fused"])
def test_forward_features_and_forward_head_round_trip_in_either_format(fused):
    model = _model("pose", fused)
    with torch.no_grad():
        expected = model(X)
        for x in (X, CHANNELS_LAST):
            feats = model.forward_features(x)
            channels_last = x is CHANNELS_LAST
            assert all(f.is_contiguous(memory_format=torch.channels_last) if channels_last else f.is_contiguous()
                       for f in feats)
            heatmaps = model.forward_head(feats)
            assert heatmaps.is_contiguous(memory_format=torch.channels_last) == channels_last
            assert torch.equal(heatmaps, expected)  # bit for bit: the head runs on channels-last maps
            assert heatmaps.reshape(2, heatmaps.shape[1], -1).shape[-1] == 10 * 8
        inter = model.forward_intermediates(X, intermediates_only=True)
        assert all(f.is_contiguous() for f in inter) and inter[0].view(2, -1) is not None


def test_a_strided_input_gives_contiguous_outputs():
    model = _model("pose", fused=False)
    wide = torch.randn(2, 3, 40, 64, generator=torch.Generator().manual_seed(1))
    strided = wide[:, :, :, ::2]  # neither contiguous nor channels-last
    assert not strided.is_contiguous() and not strided.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(strided)
        assert out.is_contiguous() and torch.equal(out, model(strided.contiguous()))

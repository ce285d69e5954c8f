"""Inference paths give the eager model's outputs: fused (BatchNorm folded, oneDNN kernels),
torch.compile, bf16 autocast, torch.export (ONNX export: tests/test_onnx_dynamic.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import hrformer
from hrformer import HRFormer
from parity import QUICK_HEADS, SMALL, outputs


@pytest.mark.slow  # 2-3 minutes of compilation on 2 cores
def test_compiled_equals_eager_without_graph_breaks():
    """Every building block the registered models use (stem, bottlenecks, transitions, padded window
    attention, FFN, up- and down-sampling fusion, head) in one module per stage: compiling the full
    HRFormer-T takes minutes on 2 cores; ``benchmarks/`` compiles the full T/S/B with fullgraph."""
    torch.manual_seed(0)
    model = HRFormer(SMALL, head="pose").eval()
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: a graph break is an error
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_frozen_compile_of_the_fused_model_equals_eager():
    """The README's CPU deployment recipe: inductor freezing (weights as constants) of the fused
    model, static shapes, autograd off; same small model as above."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    model = HRFormer(SMALL, head="pose").eval()
    fused = copy.deepcopy(model).fuse_for_inference()
    x = torch.randn(1, 3, 64, 48)
    with inductor_config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(fused, fullgraph=True, dynamic=False)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("head", QUICK_HEADS)
def test_bf16_autocast_is_finite_and_close(head):
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head=head).eval()
    x = torch.randn(2, 3, 64, 48)
    ref = outputs(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = outputs(model, x)
    for r, o in zip(ref, out):
        assert torch.isfinite(o).all()
        assert (o.float() - r).abs().max() <= 0.1 * r.abs().max()  # bf16 keeps ~3 significant digits


@pytest.mark.slow  # the fused classification model is exported in the default suite (test_export.py)
def test_torch_export_backbone():
    model = HRFormer(SMALL, head=None).eval()
    x = torch.randn(1, 3, 64, 48)
    program = torch.export.export(model, (x,))
    for ref, out in zip(outputs(model, x), program.module()(x)):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)

"""Export and tracing of fused (inference-mode) models: the oneDNN fast path steps aside for
tracers, exporters and counters, which then see the reference ops."""

from __future__ import annotations

import copy

import pytest
import torch

import hrformer
from hrformer.heads import HEADS
from hrformer.profiling import profile
from parity import SMALL  # every block once: tracing the full HRFormer-T costs 3-4x, tests no more


def _fused_pair(head, **kwargs):
    torch.manual_seed(0)
    config = SMALL.with_(**HEADS[head].config_defaults) if head else SMALL
    model = hrformer.HRFormer(config, head=head, **kwargs).eval()
    return model, copy.deepcopy(model).fuse_for_inference()


def _as_list(out):
    return out if isinstance(out, (list, tuple)) else [out]


def _assert_close(outs, refs, rel=1e-4):
    for out, ref in zip(_as_list(outs), _as_list(refs)):
        assert out.shape == ref.shape
        assert (torch.as_tensor(out) - ref).abs().max() <= rel * ref.abs().max()


@pytest.mark.slow
def test_onnx_dynamo_export_pose(tmp_path):
    """torch.export-based ONNX exporter (needs onnxscript; ~40 s on 2 cores)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, fused = _fused_pair("pose")
    x = torch.randn(1, 3, 64, 48)
    path = tmp_path / "pose.onnx"
    torch.onnx.export(fused, (x,), str(path), dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        _assert_close([torch.from_numpy(g) for g in got], model(x))


@pytest.mark.parametrize("head", ["classification", pytest.param("segmentation", marks=pytest.mark.slow)])
def test_torch_export_of_fused_heads(head):
    model, fused = _fused_pair(head, num_classes=10)  # both heads take num_classes
    x = torch.randn(1, 3, 64, 48)
    program = torch.export.export(fused, (x,))
    assert not any("mkldnn" in str(node.target) for node in program.graph.nodes)
    with torch.no_grad():
        _assert_close(program.module()(x), model(x))


def test_jit_trace_of_fused_model():
    model, fused = _fused_pair("pose")
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        traced = torch.jit.trace(fused, x)
        _assert_close(traced(x), model(x))
    assert "mkldnn" not in str(traced.inlined_graph)


def test_profile_of_fused_model_counts_the_same_macs():
    """FLOP counting sees the reference convolutions, so folding BatchNorm changes no MAC."""
    model, fused = _fused_pair("pose")
    assert profile(fused, (64, 48)).macs_by_op == profile(model, (64, 48)).macs_by_op




@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:hrformer. fuse_for_inference.dtype=torch.bfloat16:UserWarning")
def test_export_onnx_of_a_bf16_fused_model_writes_a_float32_file_that_onnx_runtime_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, _ = _fused_pair("pose")
    bf16 = copy.deepcopy(model).fuse_for_inference(dtype=torch.bfloat16)
    path = tmp_path / "bf16.onnx"
    with pytest.warns(UserWarning, match="float32 copy"):
        hrformer.export_onnx(bf16, path, input_size=(64, 48))
    assert next(bf16.parameters()).dtype == torch.bfloat16 and bf16.is_fused  # the model is unchanged
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    x = torch.randn(1, 3, 64, 48)
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        _assert_close(torch.from_numpy(got), copy.deepcopy(bf16).float()(x))  # the float32 copy it holds
        _assert_close(torch.from_numpy(got), bf16(x), rel=3e-2)  # bf16 rounding, as the fused bf16 model

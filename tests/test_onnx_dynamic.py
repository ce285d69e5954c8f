"""``hrformer.export_onnx``: one ONNX file, exported once, that ONNX Runtime runs at any batch and
input size with the PyTorch outputs (the window padding and the fusion resizes are computed from
the runtime shape, not baked in at the traced size)."""

from __future__ import annotations

import copy

import pytest
import torch

import hrformer
from hrformer import HRFormer
from hrformer.cli import main
from hrformer.export import compare_onnx
from hrformer.heads import HEADS
from parity import SMALL  # every building block, exported in ~2 s on 2 cores

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# Traced at 64x48; run at sizes whose maps at strides 4/8/16/32 are none of them multiples of 7
# (23x15, 12x8, 6x4, 3x2 and 30x22, 15x11, 8x6, 4x3), an odd size, and batch 2.
EXPORT_SIZE = (64, 48)
RUN_SHAPES = [(2, 3, 92, 60), (1, 3, 61, 45), (1, 3, 120, 88)]


def _small(head, **kwargs):
    torch.manual_seed(0)
    return HRFormer(SMALL, head=head, **kwargs).eval()


def _check_dynamic(model, tmp_path, shapes=RUN_SHAPES):
    path = tmp_path / "model.onnx"
    info = hrformer.export_onnx(model, path, input_size=EXPORT_SIZE)
    assert info["dynamic"] and info["opset"] == 17
    assert compare_onnx(model, path, shapes) <= 1e-4
    return info


# The plain segmentation head's ops (upsample, concatenate, convolutions) are a subset of the OCR
# head's: it is exported in the slow suite.
@pytest.mark.parametrize("head", [pytest.param(h, marks=pytest.mark.slow) if h == "segmentation" else h
                                  for h in sorted(HEADS)])
def test_every_head_runs_at_any_size(head, tmp_path):
    info = _check_dynamic(_small(head), tmp_path, RUN_SHAPES[:2])
    assert info["outputs"] == ["output"]


@pytest.mark.parametrize("out_indices", [(0, 1, 2, 3), pytest.param((1, 3), marks=pytest.mark.slow)])
def test_backbone_every_out_index(out_indices, tmp_path):
    info = _check_dynamic(_small(None, out_indices=out_indices), tmp_path, RUN_SHAPES[::2])
    assert info["outputs"] == [f"features_{i}" for i in out_indices]


def test_fused_model(tmp_path, randomise_bn):
    model = randomise_bn(_small("pose"))
    fused = copy.deepcopy(model).fuse_for_inference()
    path = tmp_path / "fused.onnx"
    hrformer.export_onnx(fused, path, input_size=EXPORT_SIZE)
    assert compare_onnx(model, path, RUN_SHAPES[:2]) <= 1e-4  # against the unfused model


def test_static_export_keeps_a_static_graph_and_the_mode(tmp_path):
    import onnx

    model = _small("pose").train()
    path = tmp_path / "static.onnx"
    info = hrformer.export_onnx(model, path, input_size=EXPORT_SIZE, dynamic=False, verify=True)
    assert info["max_rel_error"] <= 1e-4
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, *EXPORT_SIZE]
    assert model.training  # exported in eval mode, given back in training mode


def test_cli_export_saved_model(tmp_path, capsys):
    model = _small("pose")
    hrformer.save_pretrained(model, tmp_path / "saved")
    out = tmp_path / "cli.onnx"
    assert main(["export", str(tmp_path / "saved"), str(out), "--input-size", *map(str, EXPORT_SIZE)]) == 0
    text = capsys.readouterr().out
    assert out.exists() and "all dynamic" in text and "(ok)" in text


def test_cli_export_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "hrformer_x", str(tmp_path / "x.onnx")]) == 2
    assert "Unknown model 'hrformer_x'" in capsys.readouterr().err


@pytest.mark.slow
def test_masked_and_shifted_windows(tmp_path):
    """The padding mask and the shifted-window mask are built from the runtime size too (~15 s)."""
    torch.manual_seed(0)
    model = HRFormer(SMALL.with_(mask_padding=True, shift_windows=True, blocks=2), head="pose").eval()
    _check_dynamic(model, tmp_path, RUN_SHAPES[:2])

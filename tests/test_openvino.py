"""OpenVINO runs our dynamic ONNX export (``hrformer.export_onnx``), exported once, at other input
sizes and batch sizes with the PyTorch outputs (fp32 inference precision pinned). Skipped without
``pip install 'hrformer[openvino]'``; in the slow suite (~3 s on 2 quiet cores: export and OpenVINO
compile)."""

from __future__ import annotations

import pytest
import torch

import hrformer
from hrformer import HRFormer
from parity import SMALL

ov = pytest.importorskip("openvino")

EXPORT_SIZE = (64, 48)
# Padded windows at every stride (maps not multiples of 7), an odd size, and batch 2.
RUN_SHAPES = [(1, 3, 64, 48), (2, 3, 92, 60), (1, 3, 61, 45)]


@pytest.mark.slow  # an optional runtime; ~3 s of export and compile
def test_dynamic_export_runs_in_openvino_at_three_sizes(tmp_path, randomise_bn):
    torch.manual_seed(0)
    model = randomise_bn(HRFormer(SMALL, head="pose").eval())
    path = tmp_path / "model.onnx"
    hrformer.export_onnx(model, path, input_size=EXPORT_SIZE)
    # f32 pinned: on CPUs with AMX / AVX512-BF16 OpenVINO otherwise runs bf16 by default.
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for shape in RUN_SHAPES:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            ref = model(x)
        out = torch.from_numpy(compiled([x.numpy()])[0])
        assert out.shape == ref.shape
        assert (out - ref).abs().max() <= 1e-4 * ref.abs().max(), shape

"""Implementations the benchmarks can time.

An implementation is a callable ``build(name) -> nn.Module`` taking ``hrformer_t``/``_s``/``_b``
and returning the backbone, whose ``forward(x)`` returns the stage-4 maps. A second implementation
is passed as ``python -m benchmarks.run --reference module:function``; ``benchmarks.original:build``
runs the original HRFormer code from a checkout you provide.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional

import torch
from torch import nn

import hrformer

Builder = Callable[[str], nn.Module]
MODES = ("eager", "fused", "compiled", "fused+compiled", "fused-bf16", "fused-bf16+compiled", "ort", "openvino",
         "openvino-bf16")


def ours(name: str) -> nn.Module:
    """This package's backbone with the official classification code's semantics (relative
    position bias added, nearest fusion upsampling, four fused stage-4 maps): the same network the
    original ``cls/models/hrt.py`` runs up to stage 4."""
    return hrformer.create_model(name, head=None, upsample_mode="nearest")


def load_builder(spec: str, path: Optional[str] = None) -> Builder:
    """``"package.module:function"`` -> the function; ``path`` is prepended to ``sys.path``."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def prepare(model: nn.Module, mode: str, fullgraph: bool = True) -> nn.Module:
    """Eval-mode model for one of :data:`MODES`; ``fused`` needs ``fuse_for_inference``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model = model.eval()
    if mode == "ort":
        return OrtModel(model)
    if mode.startswith("openvino"):
        return OpenVinoModel(model, bf16=mode == "openvino-bf16")
    if "fused" in mode:
        if not hasattr(model, "fuse_for_inference"):
            raise ValueError(f"{type(model).__name__} has no fuse_for_inference()")
        # fused-bf16: BatchNorm folded in fp32, weights cast to bf16, fp32 in and out.
        model = model.fuse_for_inference(dtype=torch.bfloat16 if "bf16" in mode else None)
    if "compiled" in mode:
        # Freezing lets inductor treat the weights as constants (BatchNorm folding, prepacked
        # oneDNN weights, convolution + activation fusion) for calls without autograd. It must be
        # set in the global config: passed as options={"freezing": True} it had no effect (torch
        # 2.13: compiled in a quarter of the time, ran no faster).
        # dynamic=False: one static graph per input shape, as deployed models run.
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        model = torch.compile(model, fullgraph=fullgraph, dynamic=False)
    return model


class OrtModel:
    """ONNX Runtime on this package's dynamic export (``hrformer.export_onnx``: dynamic batch and
    input size, opset 17), CPU provider, all graph optimisations, ``torch.get_num_threads()`` intra-op
    threads. Called like the model: (B, 3, H, W) tensor -> list of output tensors."""

    def __init__(self, model: nn.Module, input_size=(256, 192)) -> None:
        import os
        import tempfile

        import onnxruntime as ort

        self._dir = tempfile.TemporaryDirectory()
        path = os.path.join(self._dir.name, "model.onnx")
        hrformer.export_onnx(model, path, input_size=input_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def eval(self) -> "OrtModel":
        return self

    def __call__(self, x: torch.Tensor):
        outs = self.session.run(None, {self.input_name: x.numpy()})
        return [torch.from_numpy(o) for o in outs]


class OpenVinoModel:
    """OpenVINO (CPU plugin) on this package's dynamic export, ``torch.get_num_threads()`` threads,
    latency hint. ``bf16=False`` pins fp32 inference precision (OpenVINO's default on CPUs with
    AMX / AVX512-BF16 is bf16); ``bf16=True`` asks for bf16, which OpenVINO only honours on those
    CPUs (elsewhere it runs fp32). Called like the model: (B, 3, H, W) -> list of output tensors."""

    def __init__(self, model: nn.Module, input_size=(256, 192), bf16: bool = False) -> None:
        import os
        import tempfile

        try:
            import openvino as ov
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the openvino modes need OpenVINO: pip install 'hrformer[openvino]'") from e

        self._dir = tempfile.TemporaryDirectory()
        path = os.path.join(self._dir.name, "model.onnx")
        hrformer.export_onnx(model, path, input_size=input_size)
        config = {
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        }
        self.compiled = ov.Core().compile_model(path, "CPU", config)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self.request = self.compiled.create_infer_request()

    def eval(self) -> "OpenVinoModel":
        return self

    def __call__(self, x: torch.Tensor):
        self.request.infer([x.numpy()])
        return [torch.from_numpy(self.request.get_output_tensor(i).data.copy())
                for i in range(len(self.compiled.outputs))]

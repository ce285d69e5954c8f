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
        model = compile_for_inference(model, fullgraph=fullgraph, dynamic_batch=True)
    return model


def compile_for_inference(model: nn.Module, fullgraph: bool = True, dynamic_batch: bool = True) -> nn.Module:
    """``torch.compile`` with inductor freezing, for calls without autograd.

    Freezing lets inductor treat the weights as constants (BatchNorm folding, prepacked oneDNN
    weights, convolution + activation fusion). It must be set in the global config: passed as
    options={"freezing": True} it had no effect (torch 2.13: compiled in a quarter of the time, ran
    no faster).

    ``dynamic_batch=True``: one graph for every batch size (:class:`DynamicBatch`: the batch
    dimension is a symbol, channels and H, W stay static, so a new input size still compiles its own
    graph). ``False``: ``dynamic=False``, one static graph per input shape, so each new batch size
    recompiles (about as long as the first call: 1-2 minutes per model on 2 cores).
    """
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    if not dynamic_batch:
        return torch.compile(model, fullgraph=fullgraph, dynamic=False)
    return DynamicBatch(torch.compile(model, fullgraph=fullgraph))


class DynamicBatch(nn.Module):
    """Calls a model compiled by ``torch.compile`` with the batch dimension of its input marked
    *unbacked* (``torch._dynamo.decorators.mark_unbacked``), so the first call compiles a graph that
    every later batch size reuses (checked by ``benchmarks/compile_dynamic.py`` under
    ``torch.compiler.set_stance("fail_on_recompile")``).

    Why unbacked and not ``torch._dynamo.mark_dynamic`` (torch 2.13, measured on HRFormer-T): a
    dynamic ("backed") size is still specialised at 0 and 1, so batch 1 compiles a graph of its own
    (first call at batch 1: that graph is for batch 1 only; first call at batch >= 2: batch 1
    recompiles), and the convolution backend choice adds a guard ``2 <= batch <= 15``, so batch 16
    recompiles too. With freezing, a backed dynamic batch also left the convolution weights
    unpacked and ran about 90x slower than the static graph (1.8 s against 20 ms for a one-block
    HRFormer-T at batch 2; fast again with inductor's ``layout_optimization`` or
    ``cpp.weight_prepack`` off). An unbacked size has none of this: no 0/1 specialisation, no guard
    from the convolution backend choice, one graph from batch 1 to 16 and beyond. ``min=1``: without
    it the unfused model's BatchNorm cannot compile (``F.batch_norm`` asks whether the input is
    empty, which an unbacked size >= 0 cannot answer).

    The mark goes on a detached alias of the input (no copy), so the caller's tensor keeps no mark.
    """

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor):
        x = x.detach()
        torch._dynamo.decorators.mark_unbacked(x, 0, min=1)
        return self.compiled(x)


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

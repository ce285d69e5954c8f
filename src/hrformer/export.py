"""ONNX export: one file that ONNX Runtime runs at any batch size and input size.

Exporter: the TorchScript-based ``torch.onnx.export(dynamo=False)``, opset 17. The window padding
and the fusion resizes are traced as shape-dependent ops (see :mod:`hrformer.layers.window`), so
the graph computes them from the runtime input size; a fused model (``fuse_for_inference``)
exports its reference ops (the oneDNN kernels step aside while tracing). The README says why this
exporter was chosen over ``dynamo=True``.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .errors import InputError

DEFAULT_OPSET = 17


def output_names(model: nn.Module) -> List[str]:
    """``["output"]`` for a model with a head, ``["features_<i>", ...]`` (one per ``out_indices``) for a
    backbone."""
    if getattr(model, "head", None) is not None:
        return ["output"]
    return [f"features_{i}" for i in getattr(model, "out_indices", (0, 1, 2, 3))]


def _default_input_size(model: nn.Module) -> Tuple[int, int]:
    cfg = getattr(model, "pretrained_cfg", None)
    try:
        return tuple(cfg["input_size"][-2:])  # type: ignore[index]
    except (TypeError, KeyError):
        return (224, 224)


def _float32(model: nn.Module) -> nn.Module:
    """``model``, or a float32 copy of it (with a warning) when it holds other floating-point parameters."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes <= {torch.float32}:
        return model
    warnings.warn(
        f"export_onnx: the model's parameters are {', '.join(sorted(str(d) for d in dtypes))}, which ONNX Runtime's "
        "CPU kernels do not take; exporting a float32 copy of it (its rounded weights, computed in float32; the "
        "model itself is unchanged). Its outputs differ from this model's by the reduced precision's rounding.",
        UserWarning, stacklevel=3,
    )
    return copy.deepcopy(model).float()


def export_onnx(
    model: nn.Module,
    path: Union[str, os.PathLike],
    input_size: Optional[Sequence[int]] = None,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    batch_size: int = 1,
    verify: bool = False,
    dynamic_batch: Optional[bool] = None,
) -> Dict[str, Any]:
    """Write ``model`` (eval mode) as ONNX to ``path``.

    ``dynamic=True``: batch, height and width are dynamic (input ``images`` of shape
    (batch, C, height, width)); the window padding is computed from the runtime shape, so any input
    size runs with the PyTorch outputs. ``dynamic=False``: a static graph for
    (``batch_size``, C, *input_size*) only. ``input_size`` (H, W) is the example traced (default: the
    model's ``pretrained_cfg`` input size). ``verify=True`` runs the file in ONNX Runtime on the
    example and, when dynamic, at a second size that needs window padding, and reports the largest
    error relative to the largest PyTorch output. ``dynamic_batch`` (default: ``dynamic``) keeps the
    batch dynamic on its own, e.g. a graph for one (H, W) and any batch (verified at two batches).

    A model in another floating-point dtype (``fuse_for_inference(dtype=torch.bfloat16)``, or
    ``model.to(torch.bfloat16)``) is exported as a float32 copy, with a warning: ONNX Runtime's CPU
    kernels take no bf16 convolutions. The copy computes in float32 with the model's rounded weights,
    so its outputs differ from the bf16 model's by bf16 rounding (about 1e-2 relative); ``verify``
    compares the file with that copy.

    Returns ``{"path", "input_size", "dynamic", "dynamic_batch", "opset", "outputs"}`` (+ ``"max_rel_error"``).
    """
    model = _float32(model)
    size = tuple(int(s) for s in (input_size or _default_input_size(model)))
    if len(size) != 2:
        raise InputError(f"input_size must be (H, W), got {input_size}")
    in_chans = getattr(model, "in_chans", 3)
    param = next(model.parameters())
    example = torch.randn(batch_size, in_chans, *size, dtype=param.dtype, device=param.device)
    names = output_names(model)
    dynamic_batch = dynamic if dynamic_batch is None else dynamic_batch
    dynamic_axes = None
    if dynamic or dynamic_batch:
        batch_axis = {0: "batch"} if dynamic_batch else {}
        dynamic_axes = {"images": {**batch_axis, **({2: "height", 3: "width"} if dynamic else {})}}
        for name in names:
            dynamic_axes[name] = dict(batch_axis)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python values taken from sizes: the ones that matter (padding,
            # resize targets) are traced as shape ops; the others (channel checks) are constant.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model, (example,), os.fspath(path), dynamo=False, opset_version=opset,
                input_names=["images"], output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
        info: Dict[str, Any] = {"path": os.fspath(path), "input_size": size, "dynamic": dynamic, "opset": opset,
                                "outputs": names, "dynamic_batch": dynamic_batch}
        if verify:
            shapes = [(batch_size, in_chans, *size)]
            if dynamic:  # a second size, which needs window padding
                shapes.append((batch_size, in_chans, size[0] + 13, size[1] + 9))
            elif dynamic_batch:  # one more image
                shapes.append((batch_size + 1, in_chans, *size))
            info["max_rel_error"] = compare_onnx(model, path, shapes)
    finally:
        model.train(was_training)
    return info


def compare_onnx(
    model: nn.Module, path: Union[str, os.PathLike], shapes: Union[Sequence[int], Sequence[Sequence[int]]],
    seed: int = 0,
) -> float:
    """Largest |ONNX Runtime - PyTorch| over the largest |PyTorch| output, on random inputs of
    ``shapes`` (one shape or several, one session)."""
    import onnxruntime as ort

    shapes = [shapes] if isinstance(shapes[0], int) else shapes
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    err = 0.0
    for shape in shapes:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            ref = model(x)
        refs = list(ref) if isinstance(ref, (list, tuple)) else [ref]
        if len(got) != len(refs):
            raise AssertionError(f"ONNX model returns {len(got)} outputs, PyTorch {len(refs)}")
        for g, r in zip(got, refs):
            if tuple(g.shape) != tuple(r.shape):
                raise AssertionError(f"output shape {tuple(g.shape)} != PyTorch {tuple(r.shape)} at input {tuple(shape)}")
            err = max(err, float((torch.from_numpy(g) - r).abs().max() / r.abs().max().clamp_min(1e-12)))
    return err

"""Where the CPU time goes: ``torch.profiler`` op times grouped into kernel classes, for our model
and, in the same run, a reference implementation.

    python -m benchmarks.profile_ops --models t --batches 1 8 --modes fused
    HRFORMER_ORIGINAL=... python -m benchmarks.profile_ops --reference benchmarks.original:build
    HRFORMER_ORIGINAL=... python -m benchmarks.profile_ops --train --models t --batches 8 --reference ...

For every implementation it reports the wall time of a forward pass (``--train``: of a training
step, forward and backward; interleaved timing, as ``benchmarks.run``), then the profiled self time
of every op, summed per class:

- required: convolutions (with their fused activation or bias), matrix products, softmax and
  attention kernels, normalisation, activations and resampling: the arithmetic of the network;
- glue: layout copies, padding, concatenation, element-wise adds/multiplies, the remaining small
  ops (allocation, views, dispatch) and ``python``: the time between the top-level ops on the
  profiler's timeline (Python, argument parsing, tensor wrapping and freeing), measured on the same
  calls as the ops; all classes are scaled together to the unprofiled wall time. ``python_min_ms`` /
  ``python_max_ms``: the least and most of it in one of the ``--calls`` profiled calls, on the same
  scale (on a shared host it is the figure that moves most with the neighbours' load).

``bound_vs_reference`` = reference wall time / our required time: the speed-up over the reference
that an implementation would reach if all of its glue were free and its arithmetic ran at the speed
of the library kernels used here (oneDNN, MKL and ATen on this machine). It is an upper bound for
any implementation built from these kernels.

ONNX Runtime and OpenVINO (``--modes ort openvino openvino-bf16``) run their kernels outside torch,
where the profiler cannot see them: their rows give the wall time and the measured speed-up only.
A figure that cannot be computed (no op times, no ``--reference``, a zero time) prints ``-``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from .impls import MODES, load_builder, ours, prepare
from .run import SIZES, forward_fn, table, write_json
from .train_step import train_step_fn
from .timing import add_timing_arguments, configure_process, interleaved

REQUIRED = ("convolution", "matmul", "attention", "normalisation", "activation", "resampling")
GLUE = ("copies", "element-wise", "other", "python")
CLASSES = REQUIRED + GLUE[:-1]
NO_VALUE = "-"  # a figure that cannot be computed: no op times, no reference, or a zero denominator

# Op-name fragments per class, matched in this order against the profiler's op names.
_PATTERNS = (
    ("convolution", ("convolution", "conv2d", "conv_depthwise", "_nnpack")),
    ("attention", ("softmax", "scaled_dot_product", "_flash_attention")),
    ("resampling", ("upsample", "interpolate")),  # before matmul: "bilinear" contains "linear"
    ("matmul", ("::mm", "addmm", "bmm", "baddbmm", "matmul", "linear")),
    ("normalisation", ("layer_norm", "batch_norm", "group_norm")),
    ("activation", ("gelu", "relu", "clamp_min", "threshold", "sigmoid", "hardtanh", "silu")),
    ("copies", ("copy_", "clone", "contiguous", "pad", "fill_", "zero_", "cat", "stack", "index", "roll",
                "_to_copy")),
    ("element-wise", ("::add", "::mul", "::sub", "::div", "addcmul", "addcdiv", "where")),
)


def op_class(name: str) -> str:
    """The kernel class of a profiler op name (see the module docstring); ``other`` if none fits."""
    for cls, fragments in _PATTERNS:
        if any(f in name for f in fragments):
            return cls
    return "other"


def profiled_classes(fn: Callable[[], None], calls: int = 2) -> Dict[str, float]:
    """Self CPU milliseconds per call of ``fn``, per op class, over ``calls`` profiled calls, and
    ``python``: the time per call between the top-level ops on the profiler's timeline (Python,
    argument parsing, tensor wrapping and freeing), measured on the same calls as the ops, with
    ``python_min`` / ``python_max``: the least and most of it in one call (each call is profiled on
    its own: on a shared host the same forward's gaps vary by 2x within minutes, and the spread says
    how far to trust the mean); and ``top_level_ops``: the ops per call on that timeline (a count,
    not a time: each costs Python and dispatch besides its kernel)."""
    fn()
    per_class: Dict[str, float] = defaultdict(float)
    gaps: List[float] = []
    ops = 0
    for _ in range(calls):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        for event in prof.key_averages():
            per_class[op_class(event.key)] += event.self_cpu_time_total / 1e3 / calls
        top = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.cpu_parent is None)
        if top:
            span = max(end for _, end in top) - top[0][0]
            gaps.append(max(0.0, span - sum(end - start for start, end in top)) / 1e3)
        ops += len(top)
    classes = {cls: per_class.get(cls, 0.0) for cls in CLASSES}
    if gaps:
        classes.update(python=sum(gaps) / len(gaps), python_min=min(gaps), python_max=max(gaps))
    classes["top_level_ops"] = ops / calls
    return classes


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Any:
    """``numerator / denominator`` to two decimals, or ``NO_VALUE`` when either is absent or zero."""
    if not numerator or not denominator:
        return NO_VALUE
    return round(numerator / denominator, 2)


def breakdown(wall_ms: float, per_class: Dict[str, float], ref_ms: Optional[float]) -> Dict[str, Any]:
    """The columns of one implementation's row: its wall time, the profiled classes scaled to it,
    and the ratios to the reference wall time ``ref_ms`` (None without a reference).

    ONNX Runtime and OpenVINO run outside torch: the profiler sees none of their kernels (at most the
    tensor conversions around them), so a row without any required op time reports its wall time
    only, and every ratio it cannot compute is ``NO_VALUE``."""
    row: Dict[str, Any] = {"wall_ms": round(wall_ms, 1), "speedup_vs_reference": ratio(ref_ms, wall_ms)}
    profiled = sum(per_class.get(c, 0.0) for c in CLASSES)
    if not sum(per_class.get(c, 0.0) for c in REQUIRED):
        row.update({f"{c}_ms": NO_VALUE for c in REQUIRED + GLUE})
        row.update(required_ms=NO_VALUE, glue_share=NO_VALUE, bound_vs_reference=NO_VALUE,
                   python_min_ms=NO_VALUE, python_max_ms=NO_VALUE)
        return row
    if "python" in per_class:
        # Ops and the gaps between them measured on the same profiled calls: all scaled to the
        # unprofiled wall time (profiling slows every op and every gap a little).
        scale = wall_ms / (profiled + per_class["python"])
        ms = {cls: per_class.get(cls, 0.0) * scale for cls in CLASSES}
        ms["python"] = per_class["python"] * scale
        spread = {f"python_{end}_ms": round(per_class[f"python_{end}"] * scale, 1)
                  for end in ("min", "max") if f"python_{end}" in per_class}
    else:  # op times only: the rest of the wall time is the glue between ops
        spread = {}
        scale = min(1.0, wall_ms / profiled)
        ms = {cls: per_class.get(cls, 0.0) * scale for cls in CLASSES}
        ms["python"] = max(0.0, wall_ms - sum(ms.values()))
    required = sum(ms[c] for c in REQUIRED)
    row.update({f"{c}_ms": round(ms[c], 1) for c in REQUIRED + GLUE})
    row.update({f"python_{end}_ms": spread.get(f"python_{end}_ms", NO_VALUE) for end in ("min", "max")})
    row["required_ms"] = round(required, 1)
    row["glue_share"] = round(1 - required / wall_ms, 3) if wall_ms else NO_VALUE
    row["bound_vs_reference"] = ratio(ref_ms, required)
    return row


def breakdown_rows(args: argparse.Namespace, reference, archs: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for arch in archs:
        if args.train:
            models = {"ours train": ours(arch).train()}
        else:
            models = {f"ours {mode}": prepare(ours(arch), mode) for mode in args.modes}
        if reference is not None:
            ref_model = reference(arch)
            models = {"reference": ref_model.train(args.train), **models}
        make = train_step_fn if args.train else forward_fn
        for batch in args.batches:
            x = torch.randn(batch, 3, *SIZES[args.size], generator=torch.Generator().manual_seed(0))
            fns = {impl: make(m, x) for impl, m in models.items()}
            walls = interleaved(fns, reps=args.repeats, warmup=1, block_s=args.block, quiet_only=not args.no_retry)
            ref_ms: Optional[float] = walls["reference"].median * 1e3 if "reference" in walls else None
            for impl, fn in fns.items():
                wall = walls[impl].median * 1e3
                per_class = profiled_classes(fn, args.calls)
                row: Dict[str, Any] = {"model": arch, "impl": impl, "task": "train" if args.train else "inference",
                                       "size": args.size, "batch": batch}
                row.update(breakdown(wall, per_class, ref_ms))
                row["ops_per_call"] = round(per_class["top_level_ops"])
                rows.append(row)
                print(row, flush=True)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t", "s", "b"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--size", default="256x192", choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=["eager", "fused"], choices=[m for m in MODES if "compiled" not in m])
    ap.add_argument("--train", action="store_true", help="profile a training step (forward + backward) instead")
    ap.add_argument("--calls", type=int, default=5,
                    help="profiled calls per implementation (forward passes; training steps with --train), each "
                         "profiled on its own: python_min_ms / python_max_ms give the spread of the time between ops")
    add_timing_arguments(ap, block_s=1.0, warmup=False, verb="profiled")
    ap.add_argument("--json", default="benchmarks/out/profile_ops.json")
    args = ap.parse_args(argv)

    configure_process(args)
    reference = load_builder(args.reference, args.reference_path) if args.reference else None
    rows = breakdown_rows(args, reference, [f"hrformer_{m}" for m in args.models])
    cols = ["model", "impl", "task", "batch", "wall_ms", *(f"{c}_ms" for c in REQUIRED + GLUE), "python_min_ms",
            "python_max_ms", "glue_share",
            "ops_per_call", "speedup_vs_reference", "bound_vs_reference"]
    print(table(rows, cols))
    result = {"torch": torch.__version__, "threads": args.threads, "breakdown": rows}
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

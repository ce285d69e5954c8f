"""``hrformer export SOURCE out.onnx``: one ONNX file, dynamic batch and input size, checked in ONNX
Runtime. SOURCE is anything :mod:`hrformer.cli.resolve` takes; a bare architecture is exported with
untrained weights, and says so. ``--static H W`` fixes the input size only (any batch still runs);
``--batch N`` fixes the batch. The file is written under a temporary name and renamed once verified."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..heads import HEADS
from .errors import fail, user_errors
from .files import atomic_output, check_no_overwrite, check_output, model_files
from .resolve import DEFAULT_HEAD, load_model

# The TorchScript exporter's range for this model: attention is exported as
# scaled_dot_product_attention, which ONNX has from opset 14; 20 is the exporter's newest.
MIN_OPSET, MAX_OPSET = 14, 20


def _check_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        fail("hrformer export checks the file in ONNX Runtime, which is not installed: pip install onnxruntime "
             "(in pip install 'hrformer[test]'), or skip the check with --no-verify")


def run(args: argparse.Namespace) -> int:
    """Run the ``export`` command; returns the exit status."""
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        fail(f"--opset {args.opset}: unsupported; use {MIN_OPSET}-{MAX_OPSET} (default 17)")
    for flag, size in (("--static", args.static), ("--input-size", args.input_size)):
        if size is not None and min(size) < 1:
            fail(f"{flag} {size[0]} {size[1]}: sizes must be positive")
    if args.batch is not None and args.batch < 1:
        fail(f"--batch {args.batch}: must be positive")
    check_output(args.out, "OUT", (".onnx",))
    check_no_overwrite([*model_files("SOURCE", args.source), *model_files("--weights", args.weights)],
                       [("OUT", args.out)])
    if not args.no_verify:
        _check_onnxruntime()
    resolved = load_model(args.source, args.weights, args.head, source_flag="SOURCE")
    if not resolved.trained:
        print(f"warning: {args.source} is a bare architecture: its weights are untrained (random). Name a tag "
              "for published weights (hrformer list --pretrained) or give --weights FILE", file=sys.stderr)
    elif resolved.untrained_head:
        print(f"warning: --head {args.head}: the {args.head} head is untrained (random); the backbone has "
              f"the weights of {args.source}", file=sys.stderr)
    model = resolved.model
    if args.fuse:
        model = model.fuse_for_inference()
    from ..export import export_onnx

    size = args.static or args.input_size
    start = time.perf_counter()
    with atomic_output(args.out, "OUT") as tmp, user_errors("export", needed_for="hrformer export"):
        info = export_onnx(model, tmp, input_size=size, dynamic=args.static is None, opset=args.opset,
                           verify=not args.no_verify, batch_size=args.batch or 1, dynamic_batch=args.batch is None)
    batch = "batch" if info["dynamic_batch"] else str(args.batch)
    height, width = ("height", "width") if info["dynamic"] else info["input_size"]
    fixed = [axis for axis, dynamic in (("batch", info["dynamic_batch"]), ("size", info["dynamic"])) if not dynamic]
    shape = f"({batch}, C, {height}, {width}), " + (f"{' and '.join(fixed)} static" if fixed else "all dynamic")
    print(f"wrote    {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB, opset {info['opset']}, "
          f"{time.perf_counter() - start:.0f} s)")
    print(f"model    {resolved.description}, head {getattr(model, 'head_type', None) or 'none (backbone)'}")
    print(f"input    images {shape}; outputs {', '.join(info['outputs'])}")
    if "max_rel_error" in info:
        ok = info["max_rel_error"] <= 1e-4
        print(f"verified onnxruntime vs PyTorch: max error {info['max_rel_error']:.1e} of the largest output "
              f"({'ok' if ok else 'MISMATCH'})")
        return 0 if ok else 1
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``export`` command on ``sub``."""
    p = sub.add_parser("export", help="ONNX file with dynamic batch / height / width, checked in onnxruntime")
    p.add_argument("source", help="registered name (untrained: warned) or arch.tag (its weights), a save_pretrained "
                                  "directory / .safetensors, hf-hub:org/name, or an original checkpoint")
    p.add_argument("out", help="output .onnx path")
    p.add_argument("--weights", help="a checkpoint for SOURCE (an architecture or tag), e.g. hrformer_t --weights x.pth")
    p.add_argument("--static", nargs=2, type=int, metavar=("H", "W"),
                   help="a graph for this input size only (the batch stays dynamic unless --batch is given)")
    p.add_argument("--batch", type=int, metavar="N", help="a graph for this batch size only (default: any batch)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="example size traced (default: the model's pretrained_cfg input size)")
    p.add_argument("--head", default=DEFAULT_HEAD, choices=[DEFAULT_HEAD, *HEADS, "none"],
                   help="head (default: the tag's / file's)")
    p.add_argument("--opset", type=int, default=17, help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET}")
    p.add_argument("--fuse", action="store_true", help="fold BatchNorm first (fuse_for_inference)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=run, weights_usage="hrformer export {name} OUT.onnx --weights {file}",
                   memory_advice="trace a smaller example (--input-size H W, or --static H W)")
    return p


__all__ = ["MAX_OPSET", "MIN_OPSET", "add_parser", "run"]

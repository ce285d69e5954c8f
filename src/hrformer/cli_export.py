"""``hrformer export NAME_OR_FILE out.onnx``: one ONNX file, dynamic batch and input size."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict

from torch import nn

from .heads import HEADS


def load_model(source: str, head: Any = "default", pretrained: bool = True) -> nn.Module:
    """A registered name (``hrformer_s``: untrained), an ``arch.tag`` (its weights, when
    ``pretrained``), a directory / ``.safetensors`` written by ``save_pretrained``, or an original
    checkpoint (``.pth``/``.pt``/``.bin``)."""
    from .factory import create_model, from_original, from_pretrained, split_model_name

    kwargs: Dict[str, Any] = {} if head == "default" else {"head": head}
    if os.path.exists(source):
        if os.path.isdir(source) or source.endswith(".safetensors"):
            return from_pretrained(source, **kwargs)
        return from_original(source, **kwargs)
    _, tag = split_model_name(source)
    return create_model(source, pretrained=bool(tag) and pretrained, **kwargs).eval()


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .weights import CheckpointError, WeightsUnavailableError

    try:
        model = load_model(args.source, args.head)
    except (ValueError, CheckpointError, WeightsUnavailableError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.fuse:
        model = model.fuse_for_inference()
    size = args.static or args.input_size
    start = time.perf_counter()
    info = export_onnx(model, args.out, input_size=size, dynamic=not args.static, opset=args.opset,
                       verify=not args.no_verify)
    shape = "(batch, C, height, width), all dynamic" if info["dynamic"] else "static (1, C, %d, %d)" % info["input_size"]
    print(f"wrote    {info['path']} ({os.path.getsize(info['path']) / 1e6:.1f} MB, opset {info['opset']}, "
          f"{time.perf_counter() - start:.0f} s)")
    print(f"model    {args.source}, head {getattr(model, 'head_type', None) or 'none (backbone)'}")
    print(f"input    images {shape}; outputs {', '.join(info['outputs'])}")
    if "max_rel_error" in info:
        ok = info["max_rel_error"] <= 1e-4
        print(f"verified onnxruntime vs PyTorch: max error {info['max_rel_error']:.1e} of the largest output "
              f"({'ok' if ok else 'MISMATCH'})")
        return 0 if ok else 1
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("export", help="ONNX file with dynamic batch / height / width, checked in onnxruntime")
    p.add_argument("source", help="registered name (untrained) or arch.tag (its weights), a save_pretrained "
                                  "directory / .safetensors, or an original checkpoint")
    p.add_argument("out", help="output .onnx path")
    p.add_argument("--static", nargs=2, type=int, metavar=("H", "W"), help="a static graph for this size only")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="example size traced (default: the model's pretrained_cfg input size)")
    p.add_argument("--head", default="default", choices=["default", *HEADS, "none"],
                   help="head (default: the tag's / file's)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--fuse", action="store_true", help="fold BatchNorm first (fuse_for_inference)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    p.set_defaults(func=cmd_export)

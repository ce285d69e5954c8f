"""Command line: ``hrformer info`` (default), ``hrformer list``, ``hrformer convert``, ``hrformer export``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence

import torch

from . import __version__, cli_export, cli_pose, cli_segment
from .config import ARCHS
from .heads import HEADS
from .factory import (
    create_model,
    find_architecture,
    from_original,
    from_pretrained,
    get_model_entry,
    list_models,
    save_pretrained,
    split_model_name,
)
from .profiling import profile
from .published import MEASURED, OCR_MEASURED, PUBLISHED  # constants: `hrformer info` without names profiles nothing
from .weights import CheckpointError, detect_layout, get_pretrained_cfg, read_checkpoint, unwrap_state_dict

def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _paper_table() -> str:
    config_rows = [["model", "modules (stage 1-4)", "channels C1-C4", "heads H1-H4", "blocks", "window", "mlp ratio"]]
    for name, cfg in ARCHS.items():
        config_rows.append([name, str(cfg.modules), str(cfg.channels), str(cfg.heads), str(cfg.blocks),
                            str(cfg.window_size), _fmt(cfg.mlp_ratio, 0)])
    rows = [["model", "cls params M", "(paper)", "cls GMACs 224", "(paper GFLOPs)", "pose params M", "(paper)",
             "pose GFLOPs 256x192", "(paper)", "pose GFLOPs 384x288", "(paper)"]]
    for name in PUBLISHED:
        pub, ours = PUBLISHED[name], MEASURED[name]
        rows.append([
            name, _fmt(ours["cls_params"] / 1e6, 3), _fmt(pub["cls_params_m"], 1),
            _fmt(ours["cls_macs_224"] / 1e9, 3), _fmt(pub["cls_gflops"]),
            _fmt(ours["pose_params"] / 1e6, 3), _fmt(pub["pose_params_m"], 1),
            _fmt(ours["pose_paper_macs_256x192"] / 1e9, 3), _fmt(pub["pose_256"], 1),
            _fmt(ours["pose_paper_macs_384x288"] / 1e9, 3), _fmt(pub["pose_384"], 1),
        ])
    notes = (
        "cls GMACs: conv + linear + attention matmuls as executed (padded windows included). The paper's\n"
        "classification GFLOPs also count BatchNorm (4x elements), softmax (5x) and element-wise ops (1x),\n"
        "which explains the ~7% gap. Pose GFLOPs (paper convention, reproduced within 2%): conv + linear\n"
        "MACs on unpadded tokens, no attention matmul."
    )
    ocr_rows = [["head", "model", "window", "params M", "GMACs 512x1024", "GMACs 520x520"]]
    for name, ours in OCR_MEASURED.items():
        ocr_rows.append(["ocr", name, str(get_model_entry(name).config.window_size), _fmt(ours["params"] / 1e6, 3),
                         _fmt(ours["macs_512x1024"] / 1e9, 1), _fmt(ours["macs_520x520"] / 1e9, 1)])
    ocr = ("\n\nSegmentation (OCR head, 19 classes; weights: hrformer list --pretrained '*_ocr')\n" + _table(ocr_rows))
    return ("Table 2 configurations\n" + _table(config_rows) + "\n\nMeasured vs published\n" + _table(rows) + "\n\n"
            + notes + ocr)


def cmd_info(args: argparse.Namespace) -> int:
    if not args.names:
        print(_paper_table())
        return 0
    rows = [["model", "head", "input", "params M", "GMACs", "conv", "linear", "attention", "feature channels"]]
    for name in args.names:
        try:
            get_model_entry(name)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        # The tag's (or the bare name's default tag's) head and input size, unless given.
        # (--head given: the architecture alone with that head, the tag's model has another head)
        model = create_model(name) if args.head == "default" else create_model(name.split(".")[0], head=args.head)
        size = tuple(args.input_size) if args.input_size else tuple(model.pretrained_cfg["input_size"][-2:])
        p = profile(model, size)
        rows.append([
            name, str(model.head_type), f"{size[0]}x{size[1]}", _fmt(p.params / 1e6, 3), _fmt(p.gmacs, 3),
            _fmt(p.macs_by_op["conv"] / 1e9, 3), _fmt(p.macs_by_op["linear"] / 1e9, 3),
            _fmt(p.macs_by_op["attention"] / 1e9, 3), str(list(get_model_entry(name).config.channels)),
        ])
    print(_table(rows))
    return 0


def _add_info(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("info", help="architectures, parameters and MACs (default command)")
    p.add_argument("names", nargs="*", help=f"model names ({', '.join(list_models())})")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--head", default="default", choices=["default", *HEADS, "none"],
                   help="head (default: the tag's; a bare name's default tag is the classifier)")
    p.set_defaults(func=cmd_info)


def _head_text(model) -> str:
    if model.head is None:
        return "none (backbone)"
    return f"{model.head_type}, {model.head.output_arg} {model.head.num_outputs}"


def cmd_list(args: argparse.Namespace) -> int:
    if not args.pretrained:
        rows = [["model", "channels", "description"]]
        for name in list_models(args.pattern):
            entry = get_model_entry(name)
            rows.append([name, "/".join(map(str, entry.config.channels)), entry.description])
        print(_table(rows))
        return 0
    rows = [["name", "head", "input", "reported", "original file", "licence", "hub repo (planned)"]]
    for name in list_models(args.pattern, pretrained=True):
        cfg = get_pretrained_cfg(*split_model_name(name))
        kwargs = cfg.model_kwargs
        head = kwargs["head"] or "none"
        metric = ", ".join(f"{k} {v}" for k, v in cfg.metrics.items()) or "-"
        original = f"{cfg.layout or 'layout unverified'}, {'download' if cfg.url else 'by hand'}"
        rows.append([name, head, "x".join(map(str, cfg.input_size[1:])), metric, original, cfg.license,
                     cfg.hf_hub_id or "-"])
    print(_table(rows))
    return 0


def _fields(rows: List[List[str]]) -> str:
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        checkpoint = read_checkpoint(args.src)
        sd = unwrap_state_dict(checkpoint)
        layout = detect_layout(sd)
        model = from_original(checkpoint, arch=args.arch)
        weights, config = save_pretrained(model, args.dst)
        reloaded = from_pretrained(weights)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ours, theirs = model.state_dict(), reloaded.state_dict()
    identical = ours.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in ours.items())
    print(_fields([
        ["source", f"{args.src} ({layout} layout, {len(sd)} tensors)"],
        ["architecture", f"{find_architecture(model.config) or 'unregistered'} "
                         f"(channels {'/'.join(map(str, model.config.channels))})"],
        ["head", _head_text(model)],
        ["semantics", f"rel_pos_bias={model.config.rel_pos_bias}, upsample_mode={model.config.upsample_mode}, "
                      f"multiscale_output={model.config.multiscale_output}, window_size={model.config.window_size}"],
        ["wrote", f"{weights} ({len(ours)} tensors), {config}"],
        ["verified", "strict reload, all tensors identical" if identical else "MISMATCH after reload"],
    ]))
    return 0 if identical else 1


def _add_list(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("list", help="registered models, or with --pretrained the weights registry")
    p.add_argument("pattern", nargs="?", default="", help="wildcard, e.g. 'hrformer_s*'")
    p.add_argument("--pretrained", action="store_true", help="list the arch.tag weights")
    p.set_defaults(func=cmd_list)


def _add_convert(sub: "argparse._SubParsersAction") -> None:
    p = sub.add_parser("convert", help="original checkpoint -> model.safetensors + config.json, verified")
    p.add_argument("src", help="official or mmpose checkpoint (.pth/.pt/.bin/.safetensors)")
    p.add_argument("dst", help="output directory, or a .safetensors path (config.json is written beside it)")
    p.add_argument("--arch", help="force a registered architecture (default: inferred from the tensor shapes)")
    p.set_defaults(func=cmd_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrformer", description="High-Resolution Transformer models")
    parser.add_argument("--version", action="version", version=f"hrformer {__version__}")
    sub = parser.add_subparsers(dest="command")
    _add_info(sub)
    _add_list(sub)
    _add_convert(sub)
    cli_export.add_parser(sub)
    cli_pose.add_parser(sub)
    cli_segment.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["info"] + argv
    args = parser.parse_args(argv)
    if getattr(args, "head", None) == "none":
        args.head = None
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``hrformer info [NAME ...]``: Table 2 and the published numbers (constants, nothing profiled), or
the parameters and MACs of the named models (a name, ``arch.tag``, a saved model or a checkpoint)."""

from __future__ import annotations

import argparse
import os
from typing import Optional

from ..config import ARCHS
from ..factory import create_model, get_model_entry, list_models
from ..heads import HEADS
from ..profiling import profile
from ..published import MEASURED, OCR_MEASURED, PUBLISHED  # constants: `hrformer info` without names profiles nothing
from .errors import fail, user_errors
from .formatting import fmt, table
from .resolve import DEFAULT_HEAD, SAVED_PREFIXES, load_model, looks_like_path

def _paper_table() -> str:
    config_rows = [["model", "modules (stage 1-4)", "channels C1-C4", "heads H1-H4", "blocks", "window", "mlp ratio"]]
    for name in PUBLISHED:  # the paper's Table 2: T, S, B (ARCHS also lists the HRNet and window variants)
        cfg = ARCHS[name]
        config_rows.append([name, str(cfg.modules), str(cfg.channels), str(cfg.heads), str(cfg.blocks),
                            str(cfg.window_size), fmt(cfg.mlp_ratio, 0)])
    rows = [["model", "cls params M", "(paper)", "cls GMACs 224", "(paper GFLOPs)", "pose params M", "(paper)",
             "pose GFLOPs 256x192", "(paper)", "pose GFLOPs 384x288", "(paper)"]]
    for name in PUBLISHED:
        pub, ours = PUBLISHED[name], MEASURED[name]
        rows.append([
            name, fmt(ours["cls_params"] / 1e6, 3), fmt(pub["cls_params_m"], 1),
            fmt(ours["cls_macs_224"] / 1e9, 3), fmt(pub["cls_gflops"]),
            fmt(ours["pose_params"] / 1e6, 3), fmt(pub["pose_params_m"], 1),
            fmt(ours["pose_paper_macs_256x192"] / 1e9, 3), fmt(pub["pose_256"], 1),
            fmt(ours["pose_paper_macs_384x288"] / 1e9, 3), fmt(pub["pose_384"], 1),
        ])
    notes = (
        "cls GMACs: conv + linear + attention matmuls as executed (padded windows included). The paper's\n"
        "classification GFLOPs also count BatchNorm (4x elements), softmax (5x) and element-wise ops (1x),\n"
        "which explains the ~7% gap. Pose GFLOPs (paper convention, reproduced within 2%): conv + linear\n"
        "MACs on unpadded tokens, no attention matmul."
    )
    ocr_rows = [["head", "model", "window", "params M", "GMACs 512x1024", "GMACs 520x520"]]
    for name, ours in OCR_MEASURED.items():
        ocr_rows.append(["ocr", name, str(get_model_entry(name).config.window_size), fmt(ours["params"] / 1e6, 3),
                         fmt(ours["macs_512x1024"] / 1e9, 1), fmt(ours["macs_520x520"] / 1e9, 1)])
    ocr = ("\n\nSegmentation (OCR head, 19 classes; weights: hrformer list --pretrained '*_ocr')\n" + table(ocr_rows))
    return ("Table 2 configurations\n" + table(config_rows) + "\n\nMeasured vs published\n" + table(rows) + "\n\n"
            + notes + ocr)


def _model(name: str, head: object, weights: Optional[str] = None):
    """A registered name is built, not loaded (profiling needs no weights); files, saved models and
    a name with ``--weights`` (whose head may differ from the name's) go through the resolver."""
    if weights is not None or os.path.exists(name) or name.startswith(SAVED_PREFIXES) or looks_like_path(name):
        return load_model(name, weights, head=head).model
    with user_errors(""):
        get_model_entry(name)  # an unknown name: the error lists the registered ones
    # The tag's (or the bare name's default tag's) head and input size, unless --head is given
    # (then the architecture alone with that head: the tag's model has another head).
    return create_model(name) if head == DEFAULT_HEAD else create_model(name.split(".")[0], head=head)


def run(args: argparse.Namespace) -> int:
    """Run the ``info`` command; returns the exit status."""
    if not args.names:
        print(_paper_table())
        return 0
    if args.weights is not None and len(args.names) != 1:
        fail(f"--weights {args.weights}: give one model name with it (got {len(args.names)})")
    rows = [["model", "head", "input", "params M", "GMACs", "conv", "linear", "attention", "feature channels"]]
    for name in args.names:
        model = _model(name, args.head, args.weights)
        size = tuple(args.input_size) if args.input_size else tuple(model.pretrained_cfg["input_size"][-2:])
        with user_errors(f"--input-size {size[0]} {size[1]}"):
            p = profile(model, size)
        rows.append([
            name, str(model.head_type), f"{size[0]}x{size[1]}", fmt(p.params / 1e6, 3), fmt(p.gmacs, 3),
            fmt(p.macs_by_op["conv"] / 1e9, 3), fmt(p.macs_by_op["linear"] / 1e9, 3),
            fmt(p.macs_by_op["attention"] / 1e9, 3), str(list(model.config.channels)),
        ])
    print(table(rows))
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``info`` command on ``sub``."""
    p = sub.add_parser("info", help="architectures, parameters and MACs (default command)")
    p.add_argument("names", nargs="*", help=f"model names ({', '.join(list_models())}), arch.tag, a saved model "
                                            "directory / .safetensors or an original checkpoint")
    p.add_argument("--weights", help="a checkpoint for the one model named (an architecture or tag), e.g. "
                                    "hrformer_t --weights x.pth")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"))
    p.add_argument("--head", default=DEFAULT_HEAD, choices=[DEFAULT_HEAD, *HEADS, "none"],
                   help="head (default: the tag's or file's; a bare name's default tag is the classifier)")
    p.set_defaults(func=run, weights_usage="hrformer info {name} --weights {file}",
                   memory_advice="profile at a smaller --input-size H W")
    return p


__all__ = ["add_parser", "run"]

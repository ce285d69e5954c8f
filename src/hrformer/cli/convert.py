"""``hrformer convert SRC DST``: an original checkpoint (or a state dict in hrformer's layout, with
``--arch``) -> ``model.safetensors`` + ``config.json``, reloaded strictly and compared tensor by tensor."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .errors import check_input, fail, user_errors
from .files import check_no_overwrite, check_output, model_files
from .formatting import fields
from .resolve import CHECKPOINT_SUFFIXES, model_from_file, read_weights_file


def _head_text(model: torch.nn.Module) -> str:
    if model.head is None:
        return "none (backbone)"
    return f"{model.head_type}, {model.head.output_arg} {model.head.num_outputs}"


def run(args: argparse.Namespace) -> int:
    """Run the ``convert`` command; returns the exit status."""
    import hrformer
    from ..factory import find_architecture

    check_input(args.src, "SRC")
    dst = Path(args.dst)
    if dst.suffix.lower() in CHECKPOINT_SUFFIXES and dst.suffix.lower() != ".safetensors" or dst.suffix == ".json":
        fail(f"DST {args.dst}: give a directory or a .safetensors path (config.json is written beside it)")
    from ..weights.hub import saved_paths

    weights_path, config_path = (str(p) for p in saved_paths(dst))
    check_output(weights_path, "DST", make_dirs=True)
    check_no_overwrite(model_files("SRC", args.src), [("DST", weights_path), ("DST", config_path)])
    checkpoint = read_weights_file(args.src)
    layout = checkpoint.layout
    if checkpoint.saved is not None:
        fail(f"{args.src}: already a saved model (its config with it), nothing to convert")
    if layout == "hrformer" and not args.arch:
        fail(f"{args.src}: a state dict in hrformer's layout does not name its architecture; give it with --arch "
             f"(e.g. hrformer convert {args.src} {args.dst} --arch hrformer_t)")
    model = model_from_file(checkpoint, args.arch).model
    with user_errors(f"DST {args.dst}"):
        weights, config = hrformer.save_pretrained(model, args.dst)
    reloaded = hrformer.from_pretrained(weights)
    ours, theirs = model.state_dict(), reloaded.state_dict()
    identical = ours.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in ours.items())
    print(fields([
        ["source", f"{args.src} ({layout} layout, {len(checkpoint.state_dict)} tensors)"],
        ["architecture", f"{find_architecture(model.config) or 'unregistered'} "
                         f"(channels {'/'.join(map(str, model.config.channels))})"],
        ["head", _head_text(model)],
        ["semantics", f"rel_pos_bias={model.config.rel_pos_bias}, upsample_mode={model.config.upsample_mode}, "
                      f"multiscale_output={model.config.multiscale_output}, window_size={model.config.window_size}"],
        ["wrote", f"{weights} ({len(ours)} tensors, its config in its metadata)"
                  + (f", {config}" if config is not None else "")],
        ["verified", "strict reload, all tensors identical" if identical else "MISMATCH after reload"],
    ]))
    return 0 if identical else 1


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``convert`` command on ``sub``."""
    p = sub.add_parser("convert", help="original checkpoint -> model.safetensors + config.json, verified")
    p.add_argument("src", help="official or mmpose checkpoint, or an hrformer-layout state dict with --arch "
                               "(.pth/.pt/.bin/.safetensors)")
    p.add_argument("dst", help="output directory, or a .safetensors path (config.json is written beside it)")
    p.add_argument("--arch", help="the registered architecture (default: inferred from an original checkpoint's "
                                  "tensor shapes; required for an hrformer-layout state dict)")
    p.set_defaults(func=run, weights_usage="hrformer convert {file} DST --arch {name}")
    return p


__all__ = ["add_parser", "run"]

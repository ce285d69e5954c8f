"""``hrformer list [PATTERN]``: the registered architectures, or with ``--pretrained`` the weights."""

from __future__ import annotations

import argparse

from ..factory import get_model_entry, list_models, split_model_name
from ..weights import get_pretrained_cfg
from .formatting import table


def run(args: argparse.Namespace) -> int:
    """Run the ``list`` command; returns the exit status."""
    if not args.pretrained:
        rows = [["model", "channels", "description"]]
        for name in list_models(args.pattern):
            entry = get_model_entry(name)
            rows.append([name, "/".join(map(str, entry.config.channels)), entry.description])
        print(table(rows))
        return 0
    rows = [["name", "head", "input", "reported", "original file", "licence", "hub repo (planned)"]]
    for name in list_models(args.pattern, pretrained=True):
        cfg = get_pretrained_cfg(*split_model_name(name))
        head = cfg.model_kwargs["head"] or "none"
        metric = ", ".join(f"{k} {v}" for k, v in cfg.metrics.items()) or "-"
        where = "download" if cfg.url else f"by hand from {cfg.origin_url}" if cfg.origin_url else "by hand"
        original = f"{cfg.layout or 'layout unverified'}, {where}"
        rows.append([name, head, "x".join(map(str, cfg.input_size[1:])), metric, original, cfg.license,
                     cfg.hf_hub_id or "-"])
    print(table(rows))
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``list`` command on ``sub``."""
    p = sub.add_parser("list", help="registered models, or with --pretrained the weights registry")
    p.add_argument("pattern", nargs="?", default="", help="wildcard, e.g. 'hrformer_s*'")
    p.add_argument("--pretrained", action="store_true", help="list the arch.tag weights")
    p.set_defaults(func=run)
    return p


__all__ = ["add_parser", "run"]

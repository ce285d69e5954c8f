"""Maintainer script: publish the registered pretrained weights to the Hugging Face Hub.

For every selected ``arch.tag`` (see ``hrformer list --pretrained``):

1. get the original checkpoint: downloaded from ``url`` (sha256-checked), or a file fetched by hand
   (``--file TAG=PATH``; the official releases are OneDrive links, see ``origin_url``);
2. convert it and check that what the file holds is what the registry says: layout, architecture,
   head and semantics (``model_kwargs``); a mismatch stops here, fix the registry entry first;
3. load it strictly into ``create_model(tag)``, run a forward pass at the tag's input size
   (shape, finite values), save ``model.safetensors`` + ``config.json`` into ``--out/<tag>``,
   reload them and check the outputs are identical;
4. with ``--push``, upload the folder to ``hf_hub_id`` (needs ``huggingface-cli login`` or HF_TOKEN).

Without ``--push`` it is a dry run. Example::

    python scripts/publish_weights.py 'hrformer_*.coco_*' --out published
    python scripts/publish_weights.py hrformer_s.in1k --file hrformer_s.in1k=~/Downloads/hrt_small.pth --push
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch

import hrformer
from hrformer.weights.loading import load_state_dict_strict, read_weights
from hrformer.weights.hub import download_url
from hrformer.weights.pretrained import PretrainedCfg


class PublishError(Exception):
    """A tag whose checkpoint is not what the registry describes, or does not survive the round trip."""


def _check_registry(cfg: PretrainedCfg, layout: str, inferred: Dict[str, object]) -> List[str]:
    problems = []
    if cfg.layout is not None and layout != cfg.layout:
        problems.append(f"layout {layout!r}, registry says {cfg.layout!r}")
    if inferred["name"] != cfg.architecture:
        problems.append(f"architecture {inferred['name']!r}, registry says {cfg.architecture!r}")
    for key, expected in cfg.model_kwargs.items():
        if inferred.get(key) != expected:
            problems.append(f"{key}={inferred.get(key)!r}, registry says {expected!r}")
    return problems


def publish(cfg: PretrainedCfg, source: str, out: str, push: bool) -> None:
    checkpoint = read_weights(source)
    sd, inferred, layout = checkpoint.state_dict, checkpoint.implied, checkpoint.layout
    problems = _check_registry(cfg, layout, inferred)
    if problems:
        raise PublishError(f"{source} does not hold what the registry describes: " + "; ".join(problems))
    model = hrformer.create_model(cfg.name).eval()
    load_state_dict_strict(model, sd, source=source)

    x = torch.randn(1, *cfg.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    maps = y if isinstance(y, list) else [y]
    if not all(torch.isfinite(m).all() for m in maps):
        raise PublishError("non-finite outputs")
    target = os.path.join(out, cfg.name)
    hrformer.save_pretrained(model, target, pretrained_cfg=cfg)
    with torch.no_grad():
        again = hrformer.from_pretrained(target)(x)
    if not all(torch.equal(a, b) for a, b in zip(maps, again if isinstance(again, list) else [again])):
        raise PublishError("outputs differ after save_pretrained -> from_pretrained")
    print(f"{cfg.name}: {layout} -> {target}; output {[tuple(m.shape) for m in maps]}, "
          f"mean {float(maps[0].mean()):.4f}, std {float(maps[0].std()):.4f}")
    if push:
        commit = hrformer.push_to_hub(model, cfg.hf_hub_id, pretrained_cfg=cfg,
                                      commit_message=f"{cfg.name}: converted from {os.path.basename(source)}")
        print(f"{cfg.name}: pushed to {cfg.hf_hub_id} ({commit})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tags", nargs="*", default=["*"], help="arch.tag names or wildcards (default: all)")
    parser.add_argument("--file", action="append", default=[], metavar="TAG=PATH",
                        help="an original checkpoint fetched by hand (repeatable)")
    parser.add_argument("--out", default="published", help="where the converted folders go")
    parser.add_argument("--cache-dir", help="where downloaded originals are kept (default: torch hub dir)")
    parser.add_argument("--push", action="store_true", help="upload to the Hub (default: dry run)")
    args = parser.parse_args(argv)

    files = dict(item.split("=", 1) for item in args.file)
    names = hrformer.list_models(args.tags, pretrained=True)
    unknown = set(files) - set(names)
    if unknown:
        parser.error(f"--file for tags not selected or not registered: {', '.join(sorted(unknown))}")
    failed = []
    for name in names:
        cfg = hrformer.get_pretrained_cfg(*name.split(".", 1))
        if name in files:
            source = os.path.expanduser(files[name])
        elif cfg.url:
            source = download_url(cfg.url, args.cache_dir)
        else:
            print(f"{name}: skipped, download {cfg.origin_url} by hand, then --file {name}=PATH", file=sys.stderr)
            continue
        try:
            publish(cfg, source, args.out, args.push)
        except (PublishError, hrformer.CheckpointError) as e:
            print(f"{name}: FAILED, {e}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""One training-step measurement in a fresh process, so peak RSS belongs to this configuration only.

    python -m benchmarks.train_step --model hrformer_s --batch 8 [--checkpointing] [--impl M:F]

Prints one JSON object: step times (forward + backward of the mean of every output map, train
mode), their median, peak RSS of the process, and RSS before the first step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from typing import Callable, List

import torch

from .impls import load_builder, ours
from .timing import timed_block


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def train_step_fn(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One training step on ``x``: forward, backward of the mean of every output map, gradients cleared."""

    def step() -> None:
        loss = sum(o.float().mean() for o in model(x))
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def main(argv: List[str] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hrformer_s")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", default="256x192")
    p.add_argument("--steps", type=int, default=4, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--impl", default=None, help="module:function of another implementation")
    p.add_argument("--impl-path", default=None, help="directory to add to sys.path for --impl")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    build = load_builder(args.impl, args.impl_path) if args.impl else ours
    model = build(args.model).train()
    if args.checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise SystemExit(f"{type(model).__name__} has no set_grad_checkpointing()")
        model.set_grad_checkpointing(True)
    h, w = (int(s) for s in args.size.split("x"))
    x = torch.randn(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    rss_before = _rss_mb()

    step = train_step_fn(model, x)
    step()  # warm-up
    times, disturbed = [], 0
    while len(times) < args.steps:
        t, clean = timed_block(step, 1)  # not clean: other processes used the CPU meanwhile
        if clean or disturbed >= 3 * args.steps:
            times.append(t)
        else:
            disturbed += 1
            time.sleep(1.0)
    print(json.dumps({
        "model": args.model, "batch": args.batch, "size": args.size, "checkpointing": args.checkpointing,
        "impl": args.impl or "ours", "step_ms": [round(t * 1000, 1) for t in times],
        "median_ms": round(statistics.median(times) * 1000, 1), "disturbed_steps": disturbed,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_mb": round(rss_before, 1),
    }))


if __name__ == "__main__":
    main()

"""What the first Python after kernels costs: one fixed piece of a fused block's Python (its
attention-mask lookup, ``FusedWindowAttention.kept_mask``), timed warm (called twice in a row),
right after a tiny op, right after the block's own qkv projection (the kernel that precedes it in a
forward pass), right after the whole block, and right after a forward pass of the whole model (as
it runs in a forward: once per pass).

    python -m benchmarks.python_after_kernel --models t --threads 1 2 --json benchmarks/out/python_after_kernel.json

``profile_ops`` counts the gaps between ops as "python". This tells how much of a gap is the Python
that runs there and how much is that Python finding its code and objects evicted from the caches
by what ran since it last ran: the same lookup, the same objects, five neighbours. Rounds
alternate the cases; the table gives the median microseconds of each over ``--rounds`` and their
ratio to the warm call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from hrformer.fast import kernels
from hrformer.fast.block import FusedHRFormerBlock, _layer_norm, _linear, _onednn_faster
from hrformer.fast.windows import partition_windows

from .impls import ours, prepare
from .run import SIZES, table, write_json

CASES = ("warm", "after_tiny_op", "after_qkv", "after_block", "after_model")


def first_block_input(model: torch.nn.Module, x: torch.Tensor) -> Tuple[FusedHRFormerBlock, torch.Size]:
    """The first fused block of a forward pass of ``model`` on ``x`` and its (B, H, W, C) token shape."""
    seen: List[Tuple[FusedHRFormerBlock, torch.Size]] = []
    original = FusedHRFormerBlock.forward_tokens

    def record(self: FusedHRFormerBlock, tokens: torch.Tensor) -> torch.Tensor:
        if not seen:
            seen.append((self, tokens.shape))
        return original(self, tokens)

    FusedHRFormerBlock.forward_tokens = record
    try:
        with torch.no_grad():
            model(x)
    finally:
        FusedHRFormerBlock.forward_tokens = original
    return seen[0]


def measure(
    model: torch.nn.Module, x: torch.Tensor, block: FusedHRFormerBlock, shape: torch.Size, rounds: int
) -> Dict[str, float]:
    """Median microseconds of the block's mask lookup in each of :data:`CASES`."""
    tokens = torch.randn(shape)
    b, h, w, _ = shape
    attn = block.attn
    plan = block._plan(tokens, attn)
    pads, dtype, device = plan.layout.pads, tokens.dtype, tokens.device
    qkv = attn._modules["qkv"]
    small = torch.ones(64)
    seen: Dict[str, List[float]] = {case: [] for case in CASES}
    clock = time.perf_counter_ns

    with torch.no_grad(), kernels.kernels_for(tokens):  # model(x) enters it again: the outer decision stands
        # the qkv projection's input as forward_tokens makes it
        t = _layer_norm(block.norm1, tokens)
        if plan.layout.pad is not None:
            t = torch.nn.functional.pad(t, plan.layout.pad)
        windows = partition_windows(t, plan.layout)
        onednn = _onednn_faster(qkv, windows)
        before: Dict[str, Callable[[], object]] = {
            "warm": lambda: attn.kept_mask(b, h, w, pads, dtype, device),
            "after_tiny_op": lambda: small.add(1),
            "after_qkv": lambda: _linear(qkv, windows, onednn),
            "after_block": lambda: block.forward_tokens(tokens),
            "after_model": lambda: model(x),
        }
        for _ in range(rounds):
            for case in CASES:
                out = before[case]()
                start = clock()
                attn.kept_mask(b, h, w, pads, dtype, device)  # inline: the timed region holds the lookup only
                seen[case].append((clock() - start) / 1e3)
                del out
    return {case: statistics.median(v) for case, v in seen.items()}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t"], choices=["t", "s", "b"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", default="256x192", choices=list(SIZES))
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--json", default="benchmarks/out/python_after_kernel.json")
    args = ap.parse_args(argv)

    rows: List[Dict[str, Any]] = []
    threads_before = torch.get_num_threads()
    for arch in args.models:
        model = prepare(ours(f"hrformer_{arch}"), "fused")
        x = torch.randn(args.batch, 3, *SIZES[args.size], generator=torch.Generator().manual_seed(0))
        block, shape = first_block_input(model, x)
        for threads in args.threads:
            torch.set_num_threads(threads)
            us = measure(model, x, block, shape, args.rounds)
            row: Dict[str, Any] = {"model": f"hrformer_{arch}", "threads": threads, "tokens": list(shape)}
            row.update({f"{case}_us": round(v, 2) for case, v in us.items()})
            row.update({f"{case}_vs_warm": round(us[case] / us["warm"], 1) for case in CASES[1:]})
            rows.append(row)
            print(row, flush=True)
    torch.set_num_threads(threads_before)
    print(table(rows, ["model", "threads", *(f"{c}_us" for c in CASES), *(f"{c}_vs_warm" for c in CASES[1:])]))
    if args.json:
        write_json(args.json, {"torch": torch.__version__, "rounds": args.rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

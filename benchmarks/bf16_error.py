"""How far bf16 inference is from fp32: the fused bf16 backbone (each attention product, and the one
measured fastest) against ``torch.autocast`` on the unfused model, both against the fp32 model.

    python -m benchmarks.bf16_error --models t s --batches 1 8 --seeds 0 1 \\
        --json benchmarks/results/cpu_bf16_error.json

Per model one set of weights (``torch.manual_seed(0)``; the backbone of the other benchmarks,
:func:`benchmarks.impls.ours`); per batch size and input seed one random image batch. The error is
``benchmarks.run.max_rel_error``: the largest ``|output - fp32| / max |fp32|`` over the output maps.
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any, Dict, List, Optional

import torch

from hrformer.fast import attention

from .impls import ours
from .run import SIZES, max_rel_error, table, write_json
from .timing import configure_process

PRODUCTS = ("auto", "flash", "explicit", "explicit-mixed")


def errors(arch: str, batches: List[int], seeds: List[int], size: str) -> List[Dict[str, Any]]:
    """One row per (batch, seed): the error of autocast and of the fused bf16 model per product."""
    torch.manual_seed(0)
    eager = ours(arch).eval()
    fused = copy.deepcopy(eager).fuse_for_inference(dtype=torch.bfloat16)
    pinned = attention.attention_path
    rows = []
    try:
        for batch in batches:
            for seed in seeds:
                x = torch.randn(batch, 3, *SIZES[size], generator=torch.Generator().manual_seed(seed))
                row: Dict[str, Any] = {"model": arch, "size": size, "batch": batch, "seed": seed}
                with torch.inference_mode():
                    expected = [t.float() for t in eager(x)]
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        row["autocast"] = max_rel_error(eager(x), expected)
                    for product in PRODUCTS:
                        attention.attention_path = product
                        row[f"fused_{product}"] = max_rel_error(fused(x), expected)
                rows.append({k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in row.items()})
                print(rows[-1], flush=True)
    finally:
        attention.attention_path = pinned
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t", "s"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="one random input per seed")
    ap.add_argument("--size", default="256x192", choices=list(SIZES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    configure_process(argparse.Namespace(threads=args.threads, keep_freed_memory=False))
    rows = [row for m in args.models for row in errors(f"hrformer_{m}", args.batches, args.seeds, args.size)]
    print("\n" + table(rows, ["model", "batch", "seed", "autocast", *(f"fused_{p}" for p in PRODUCTS)]))
    if args.json:
        write_json(args.json, {"torch": torch.__version__, "threads": args.threads, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What :func:`hrformer.keep_freed_memory` changes: fused forwards timed in fresh processes, with and
without it, alternated (the setting is process-wide, so one process cannot hold both), with the page
faults and the kernel (system) time per forward that glibc's returning of freed memory costs.

    python -m benchmarks.freed_memory --models t s --batches 1 8 --dtypes fp32 bf16 --pairs 6 \\
        --json benchmarks/results/cpu_freed_memory.json

Each process builds the fused backbone of the other benchmarks (``benchmarks.impls.ours``, 256x192), runs ``--warmup`` forwards, then ``--calls``
timed ones; the table gives the median over ``--pairs`` processes per setting and their ratio
(``kept / default`` < 1: faster with the setting).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import torch

from hrformer.fast.cpu import machine_info

from .impls import ours, prepare
from .run import table, write_json
from .timing import configure_process


def measure(arch: str, batch: int, dtype: str, keep: bool, warmup: int, calls: int, threads: int) -> Dict[str, float]:
    """One configuration in this process: ms per forward, minor page faults and system ms per forward."""
    configure_process(argparse.Namespace(threads=threads, keep_freed_memory=keep))
    model = prepare(ours(arch), "fused-bf16" if dtype == "bf16" else "fused")
    x = torch.randn(batch, 3, 256, 192)
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(calls):
            model(x)
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "ms": seconds / calls * 1e3,
        "page_faults": (after.ru_minflt - before.ru_minflt) / calls,
        "system_ms": (after.ru_stime - before.ru_stime) / calls * 1e3,
    }


def _in_fresh_process(args: argparse.Namespace, arch: str, batch: int, dtype: str, keep: bool) -> Dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.freed_memory", "--one", arch, str(batch), dtype, str(int(keep)),
           "--warmup", str(args.warmup), "--calls", str(args.calls), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--pairs", type=int, default=6, help="processes per setting, alternated")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=4, metavar=("ARCH", "BATCH", "DTYPE", "KEEP"), help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.one:
        arch, batch, dtype, keep = args.one
        print(json.dumps(measure(arch, int(batch), dtype, keep == "1", args.warmup, args.calls, args.threads)))
        return 0

    rows: List[Dict[str, Any]] = []
    for arch in (f"hrformer_{m}" for m in args.models):
        for dtype in args.dtypes:
            for batch in args.batches:
                runs: Dict[bool, List[Dict[str, float]]] = {False: [], True: []}
                for _ in range(args.pairs):
                    for keep in (False, True):
                        runs[keep].append(_in_fresh_process(args, arch, batch, dtype, keep))
                med = {keep: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for keep, rs in runs.items()}
                rows.append({
                    "model": arch, "dtype": dtype, "batch": batch,
                    "default_ms": round(med[False]["ms"], 1), "kept_ms": round(med[True]["ms"], 1),
                    "kept_over_default": round(med[True]["ms"] / med[False]["ms"], 3),
                    "faster_pairs": sum(k["ms"] < d["ms"] for d, k in zip(runs[False], runs[True])),
                    "default_faults": round(med[False]["page_faults"]), "kept_faults": round(med[True]["page_faults"]),
                    "default_system_ms": round(med[False]["system_ms"], 1),
                    "kept_system_ms": round(med[True]["system_ms"], 1),
                    "pairs": args.pairs, "runs": runs,
                })
                print({k: v for k, v in rows[-1].items() if k != "runs"}, flush=True)
    columns = ["model", "dtype", "batch", "default_ms", "kept_ms", "kept_over_default", "faster_pairs",
               "default_faults", "kept_faults", "default_system_ms", "kept_system_ms"]
    print("\n" + table(rows, columns))
    if args.json:
        write_json(args.json, {"torch": torch.__version__, "threads": args.threads, "machine": machine_info(),
                               "rows": [{**row, "runs": {"default": row["runs"][False], "kept": row["runs"][True]}}
                                        for row in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the memory allocator costs: fused forwards timed in fresh processes, one per allocator
setting, alternated (the settings are process-wide, so one process cannot hold two), with the page
faults and the kernel (system) time per forward.

    python -m benchmarks.freed_memory --models t s --batches 1 8 --modes fused fused-bf16 --pairs 6 \\
        --preload tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        --json benchmarks/results/cpu_freed_memory.json

Settings: ``default`` (glibc as the process finds it), ``kept`` (:func:`hrformer.keep_freed_memory`:
glibc keeps freed memory for the next forward) and, per ``--preload NAME=PATH``, another allocator
library put in front of glibc with ``LD_PRELOAD`` (tcmalloc, jemalloc, ...). Each process builds the
fused backbone of the other benchmarks (``benchmarks.impls.ours``, 256x192), runs ``--warmup``
forwards, then ``--calls`` timed ones; the table gives the median over ``--pairs`` processes per
setting and its ratio to ``default`` (< 1: faster with the setting), with the pairs it won.
``--modes`` takes any of ``benchmarks.run``'s uncompiled paths (ONNX Runtime, OpenVINO too); a
setting whose process fails is reported as aborted, with the reason, and not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, NamedTuple, Optional

import torch

from .impls import MODES, ours, prepare
from .run import table, write_json
from .timing import configure_process


def measure(arch: str, batch: int, mode: str, keep: bool, warmup: int, calls: int, threads: int) -> Dict[str, float]:
    """One configuration in this process: ms per forward, minor page faults and system ms per forward
    of the backbone prepared for ``mode`` (:data:`benchmarks.impls.MODES`)."""
    configure_process(argparse.Namespace(threads=threads, keep_freed_memory=keep))
    model = prepare(ours(arch), mode)
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


class Setting(NamedTuple):
    """One allocator setting: ``keep`` calls :func:`hrformer.keep_freed_memory` in the process,
    ``preload`` is the library put in ``LD_PRELOAD`` (None: the C library's allocator)."""

    name: str
    keep: bool = False
    preload: Optional[str] = None


def settings(preloads: List[str], kept: bool = True) -> List[Setting]:
    """``default``, ``kept`` (unless ``kept`` is False), then one setting per ``NAME=PATH`` of
    ``--preload``."""
    out = [Setting("default")] + ([Setting("kept", keep=True)] if kept else [])
    for spec in preloads:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--preload {spec!r}: expected NAME=PATH")
        if not os.path.exists(path):
            raise SystemExit(f"--preload {spec!r}: {path} does not exist")
        if name in (s.name for s in out):
            raise SystemExit(f"--preload {spec!r}: another setting is named {name!r}")
        out.append(Setting(name, preload=path))
    return out


class Aborted(RuntimeError):
    """A timed process failed (e.g. a runtime that does not run with a preloaded allocator)."""


def _in_fresh_process(args: argparse.Namespace, arch: str, batch: int, mode: str, setting: Setting) -> Dict[str, float]:
    cmd = [sys.executable, "-m", "benchmarks.freed_memory", "--one", arch, str(batch), mode, str(int(setting.keep)),
           "--warmup", str(args.warmup), "--calls", str(args.calls), "--threads", str(args.threads)]
    env = dict(os.environ)
    if setting.preload:
        env["LD_PRELOAD"] = " ".join(p for p in (setting.preload, env.get("LD_PRELOAD")) if p)
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise Aborted(f"{setting.name}: exit status {done.returncode}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: Dict[str, List[Dict[str, float]]], aborted: Dict[str, str]) -> Dict[str, Any]:
    """Per setting: median ms, page faults and system ms per forward; for every setting but
    ``default`` its median over default's and the pairs (same round) it ran faster. A setting whose
    process failed (``aborted``: name -> why) gets its reason instead of figures."""
    row: Dict[str, Any] = {}
    for name, why in aborted.items():
        row[f"{name}_ms"] = "aborted"
        row[f"{name}_error"] = why
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in runs.items() if name not in aborted}
    for name, m in med.items():
        row[f"{name}_ms"] = round(m["ms"], 1)
        if name != "default" and "default" in med:
            row[f"{name}_over_default"] = round(m["ms"] / med["default"]["ms"], 3)
            row[f"{name}_faster_pairs"] = sum(r["ms"] < d["ms"] for d, r in zip(runs["default"], runs[name]))
        row[f"{name}_faults"] = round(m["page_faults"])
        row[f"{name}_system_ms"] = round(m["system_ms"], 1)
    return row


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--modes", nargs="+", default=["fused"], choices=[m for m in MODES if "compiled" not in m],
                    help="how the backbone runs (benchmarks.run's modes): fused, fused-bf16, ort, openvino-bf16, ...")
    ap.add_argument("--pairs", type=int, default=6, help="processes per setting, alternated")
    ap.add_argument("--preload", action="append", default=[], metavar="NAME=PATH",
                    help="also time with this allocator library in LD_PRELOAD (repeatable)")
    ap.add_argument("--without-kept", action="store_true", help="skip the keep_freed_memory() setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", nargs=4, metavar=("ARCH", "BATCH", "MODE", "KEEP"), help=argparse.SUPPRESS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.one:
        arch, batch, mode, keep = args.one
        print(json.dumps(measure(arch, int(batch), mode, keep == "1", args.warmup, args.calls, args.threads)))
        return 0

    chosen = settings(args.preload, kept=not args.without_kept)
    rows: List[Dict[str, Any]] = []
    for arch in (f"hrformer_{m}" for m in args.models):
        for batch in args.batches:
            # Every mode and setting in each round, so that drift hits all of them alike.
            runs = {mode: {s.name: [] for s in chosen} for mode in args.modes}
            aborted: Dict[str, Dict[str, str]] = {mode: {} for mode in args.modes}
            for _ in range(args.pairs):
                for mode in args.modes:
                    for setting in chosen:
                        if setting.name in aborted[mode]:
                            continue
                        try:
                            runs[mode][setting.name].append(_in_fresh_process(args, arch, batch, mode, setting))
                        except Aborted as e:  # not retried: the setting is reported as aborted
                            aborted[mode][setting.name] = str(e)
            for mode in args.modes:
                rows.append({"model": arch, "mode": mode, "batch": batch, **summary(runs[mode], aborted[mode]),
                             "pairs": args.pairs, "runs": runs[mode]})
                print({k: v for k, v in rows[-1].items() if k != "runs"}, flush=True)
    others = [s.name for s in chosen[1:]]
    columns = ["model", "mode", "batch", "default_ms",
               *(c for n in others for c in (f"{n}_ms", f"{n}_over_default", f"{n}_faster_pairs")),
               *(f"{s.name}_faults" for s in chosen), *(f"{s.name}_system_ms" for s in chosen)]
    print("\n" + table(rows, columns))
    if args.json:
        # write_json puts the machine (and the parent's allocator) first; each setting's is in "settings".
        write_json(args.json, {"torch": torch.__version__, "threads": args.threads,
                               "settings": [s._asdict() for s in chosen], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

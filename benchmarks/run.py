"""Inference and training benchmarks: prints a table and writes JSON.

    python -m benchmarks.run                                  # T/S/B, batch 1 and 8, 256x192, eager+fused
    python -m benchmarks.run --models s --modes eager fused compiled --dtypes fp32 bf16
    python -m benchmarks.run --scaling --models t             # 256x192 vs 512x384 vs 1024x768
    python -m benchmarks.run --train --models s               # train step, with/without checkpointing
    python -m benchmarks.run --reference mypkg.orig:build     # time another implementation too

``--reference MODULE:FACTORY`` names a callable ``FACTORY(arch) -> nn.Module`` (arch is
``hrformer_t``/``_s``/``_b``) whose forward takes (B, 3, H, W); it is timed in the same run as
``reference``, so ratios are not spoiled by machine noise. Medians over ``--repeats`` runs after
``--warmup`` runs; fixed thread count (default 2).
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch

import hrformer

SIZES = {"256x192": (256, 192), "512x384": (512, 384), "1024x768": (1024, 768)}


def _median_ms(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def build(arch: str, mode: str, reference: Optional[Callable[[str], torch.nn.Module]]) -> torch.nn.Module:
    if mode == "reference":
        assert reference is not None
        return reference(arch).eval()
    model = hrformer.create_model(arch, head=None, features_only=True).eval()
    if mode in ("fused", "compiled-fused"):
        model.fuse_for_inference()
    if mode.startswith("compiled"):
        model = torch.compile(model)
    return model


def time_inference(model: torch.nn.Module, batch: int, size: str, dtype: str, warmup: int, repeats: int) -> float:
    h, w = SIZES[size]
    x = torch.randn(batch, 3, h, w)

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            model(x)

    return _median_ms(run, warmup, repeats)


def train_step_worker(arch: str, batch: int, checkpointing: bool, warmup: int, repeats: int) -> Dict[str, float]:
    """One process per configuration, so that peak RSS belongs to it alone."""
    torch.manual_seed(0)
    model = hrformer.create_model(arch, head="pose").train()
    model.set_grad_checkpointing(checkpointing)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, 256, 192)
    target = torch.randn(batch, 17, 64, 48)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()

    ms = _median_ms(step, warmup, repeats)
    return {"ms": ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _table(rows: List[Dict[str, Any]], cols: List[str]) -> str:
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["t", "s", "b"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--sizes", nargs="+", default=["256x192"], choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=["eager", "fused"],
                    choices=["eager", "fused", "compiled", "compiled-fused"])
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--reference", help="MODULE:FACTORY building another implementation, timed as 'reference'")
    ap.add_argument("--scaling", action="store_true", help="time 256x192, 512x384, 1024x768 (batch 1, eager)")
    ap.add_argument("--train", action="store_true", help="training step, batch 8, with and without checkpointing")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/out/results.json")
    ap.add_argument("--train-worker", nargs=3, metavar=("ARCH", "BATCH", "CKPT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.train_worker:
        arch, batch, ckpt = args.train_worker
        print(json.dumps(train_step_worker(arch, int(batch), ckpt == "1", args.warmup, args.repeats)))
        return 0

    reference = None
    modes = list(args.modes)
    if args.reference:
        module, _, factory = args.reference.partition(":")
        reference = getattr(importlib.import_module(module), factory)
        modes = ["reference"] + modes
    archs = [f"hrformer_{m}" for m in args.models]
    results: Dict[str, Any] = {"torch": torch.__version__, "threads": args.threads, "inference": [],
                               "scaling": [], "train": []}

    for arch in archs:
        for mode in modes:
            model = build(arch, mode, reference)
            for dtype in args.dtypes if mode != "reference" else ["fp32"]:
                for size in args.sizes:
                    for batch in args.batches:
                        ms = time_inference(model, batch, size, dtype, args.warmup, args.repeats)
                        results["inference"].append({"model": arch, "mode": mode, "dtype": dtype, "size": size,
                                                     "batch": batch, "ms": round(ms, 1),
                                                     "img_per_s": round(batch * 1e3 / ms, 2)})
                        print(results["inference"][-1], flush=True)
    base = {(r["model"], r["dtype"], r["size"], r["batch"]): r["ms"] for r in results["inference"] if r["mode"] == "reference"}
    for r in results["inference"]:
        ref = base.get((r["model"], "fp32", r["size"], r["batch"]))
        r["speedup_vs_reference"] = round(ref / r["ms"], 2) if ref else ""

    if args.scaling:
        for arch in archs:
            model = build(arch, "eager", None)
            times = {s: time_inference(model, 1, s, "fp32", 1, max(3, args.repeats // 2)) for s in SIZES}
            for s, ms in times.items():
                pixels = SIZES[s][0] * SIZES[s][1] / (256 * 192)
                ratio = ms / times["256x192"]
                results["scaling"].append({"model": arch, "size": s, "ms": round(ms, 1), "pixel_ratio": pixels,
                                           "time_ratio": round(ratio, 2),
                                           "ratio_over_pixels": round(ratio / pixels, 3)})
                print(results["scaling"][-1], flush=True)

    if args.train:
        for arch in archs:
            for ckpt in (False, True):
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.run", "--threads", str(args.threads), "--warmup", "1",
                     "--repeats", "3", "--train-worker", arch, "8", "1" if ckpt else "0"],
                    capture_output=True, text=True, check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results["train"].append({"model": arch, "batch": 8, "checkpointing": ckpt,
                                         "ms": round(r["ms"], 1), "peak_rss_mb": round(r["peak_rss_mb"])})
                print(results["train"][-1], flush=True)

    print()
    if results["inference"]:
        print(_table(results["inference"], ["model", "mode", "dtype", "size", "batch", "ms", "img_per_s",
                                            "speedup_vs_reference"]))
    if results["scaling"]:
        print("\n" + _table(results["scaling"], ["model", "size", "ms", "pixel_ratio", "time_ratio", "ratio_over_pixels"]))
    if results["train"]:
        print("\n" + _table(results["train"], ["model", "batch", "checkpointing", "ms", "peak_rss_mb"]))
    if args.json:
        import os

        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

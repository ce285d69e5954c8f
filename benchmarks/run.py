"""Inference and training benchmarks: prints tables and writes JSON.

    python -m benchmarks.run                                  # T/S/B, batch 1 and 8, 256x192, eager+fused
    python -m benchmarks.run --models s --modes eager fused compiled --dtypes fp32 bf16
    python -m benchmarks.run --scaling --models t --batches 1 # 256x192 vs 512x384 vs 1024x768
    python -m benchmarks.run --train --models s               # train step, with/without checkpointing
    python -m benchmarks.run --reference mypkg.orig:build --reference-path /some/dir
    # every CPU path against the original, one command per machine kind (benchmarks/RESULTS.md):
    python -m benchmarks.run --models t s --batches 1 8 --reference benchmarks.original:build \
        --modes fused fused-bf16 ort openvino openvino-bf16

``--reference MODULE:FACTORY`` names a callable ``FACTORY(arch) -> nn.Module`` (arch is
``hrformer_t``/``_s``/``_b``) returning a backbone whose forward takes (B, 3, H, W) and returns the
stage-4 maps. It is timed in the same run as ``reference``, interleaved with our variants (round
robin, one timing block each per round), so ratios are not spoiled by machine noise; blocks during
which other processes used the CPU are retried (see ``benchmarks/timing.py``). Reported: median
over ``--repeats`` blocks, after ``--warmup`` calls; fixed thread count (default 2).

``--isolate`` times each mode in a process of its own, interleaved with the reference in that process:
a runtime loaded into a process slows the others there (on a 2-core AMX Xeon, once OpenVINO had
compiled a model, the fused model's forwards took ~20% more CPU time on both threads, with no page
faults, no other thread busy and the same affinity and thread counts; cause not found), and a
deployment runs one of them. Each row then carries its own process's ``reference_ms``.

Our model is the backbone with the official classification code's semantics (nearest fusion
upsampling, relative position bias, four stage-4 maps), i.e. the network the original runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional

import torch

from hrformer.fast.cpu import machine_info
from hrformer.fast.memory import allocator

from .impls import MODES, load_builder, ours, prepare
from .timing import add_timing_arguments, configure_process, interleaved

SIZES = {"256x192": (256, 192), "512x384": (512, 384), "1024x768": (1024, 768)}


def forward_fn(model: torch.nn.Module, x: torch.Tensor, dtype: str = "fp32") -> Callable[[], None]:
    """One inference call on ``x`` (``dtype`` "bf16": under CPU autocast)."""

    def run() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            model(x)

    return run


def max_rel_error(outputs: Any, expected: List[torch.Tensor]) -> float:
    """Largest ``|output - expected| / max |expected|`` over the maps, compared in fp32 on the
    outputs' device (NaN if an output is not finite or the number of maps differs)."""
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    errors = [float((o.float() - e.float().to(o.device)).abs().max() / e.float().abs().max())
              for o, e in zip(outputs, expected)]
    return max(errors) if len(outputs) == len(expected) else float("nan")


def bench_inference(args: argparse.Namespace, reference, archs: List[str]) -> List[Dict[str, Any]]:
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        # One set of weights for every mode, so each mode's outputs can be checked against the
        # fp32 eager model's (``max_rel_error``: bf16 and the runtimes' rounding).
        eager = ours(arch).eval()
        models = {mode: prepare(copy.deepcopy(eager), mode) for mode in args.modes}
        if reference is not None:
            models = {"reference": reference(arch).eval(), **models}
        for dtype in args.dtypes:
            for size in args.sizes:
                for batch in args.batches:
                    x = torch.randn(batch, 3, *SIZES[size], generator=torch.Generator().manual_seed(0))
                    with torch.inference_mode():
                        expected = [t.float() for t in eager(x)]
                        errors = {}
                        for mode, m in models.items():
                            if mode != "reference":  # the original has its own random weights
                                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                                    errors[mode] = max_rel_error(m(x), expected)
                    fns = {mode: forward_fn(m, x, dtype) for mode, m in models.items()}
                    samples = interleaved(fns, reps=args.repeats, warmup=args.warmup, block_s=args.block,
                                          quiet_only=not args.no_retry)
                    for mode, s in samples.items():
                        ms = s.median * 1e3
                        rows.append({"model": arch, "mode": mode, "dtype": dtype, "size": size, "batch": batch,
                                     "ms": round(ms, 1), "min_ms": round(s.min * 1e3, 1),
                                     "img_per_s": round(batch * 1e3 / ms, 2), "noisy_blocks": s.discarded,
                                     "max_rel_error": float(f"{errors[mode]:.2g}") if mode in errors else ""})
                    base = samples.get("reference")
                    for r in rows[-len(samples):]:
                        r["speedup_vs_reference"] = round(base.median * 1e3 / r["ms"], 2) if base else ""
                        # What a runtime actually computed in (OpenVINO may run bf16 or f32).
                        precision = getattr(models[r["mode"]], "precision", None)
                        if precision is not None:
                            r["runtime_precision"] = precision
                        print(r, flush=True)
    return rows


def bench_isolated(args: argparse.Namespace, argv: List[str]) -> List[Dict[str, Any]]:
    """``bench_inference`` for each of ``args.modes`` in a fresh process (this command with that mode
    alone), each against the reference timed in its process: the rows of every process, each mode's
    with ``reference_ms`` (its process's reference time) and ``isolated``; one reference row per
    process is dropped as such."""
    rows = []
    for mode in args.modes:
        out = os.path.join(os.path.dirname(args.json) or ".", f".isolated_{os.getpid()}_{mode}.json")
        command = [sys.executable, "-m", "benchmarks.run", *_without_options(argv, ("--modes", "--json", "--isolate",
                   "--train", "--scaling")), "--modes", mode, "--json", out]
        subprocess.run(command, check=True)
        with open(out) as f:
            inference = json.load(f)["inference"]
        os.remove(out)
        reference = {_case(r): r["ms"] for r in inference if r["mode"] == "reference"}
        for r in inference:
            if r["mode"] != "reference":
                r.update(isolated=True, reference_ms=reference.get(_case(r), ""))
                rows.append(r)
    return rows


def _case(row: Dict[str, Any]) -> tuple:
    """What a row timed: model, dtype, size and batch."""
    return row["model"], row["dtype"], row["size"], row["batch"]


def _without_options(argv: List[str], options: tuple) -> List[str]:
    """``argv`` without the given options and their values (the words up to the next option)."""
    kept, skipping = [], False
    for word in argv:
        if word.startswith("--"):
            skipping = word.split("=")[0] in options
        if not skipping:
            kept.append(word)
    return kept


def scaling_rows(inference: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Time at each size over time at 256x192, against the pixel ratio, from the inference rows."""
    base = {(r["model"], r["mode"], r["dtype"], r["batch"]): r["ms"] for r in inference if r["size"] == "256x192"}
    rows = []
    for r in inference:
        ref = base.get((r["model"], r["mode"], r["dtype"], r["batch"]))
        if ref is None or r["size"] == "256x192":
            continue
        pixels = SIZES[r["size"]][0] * SIZES[r["size"]][1] / (256 * 192)
        ratio = r["ms"] / ref
        rows.append({"model": r["model"], "mode": r["mode"], "dtype": r["dtype"], "batch": r["batch"],
                     "size": r["size"], "pixel_ratio": pixels, "time_ratio": round(ratio, 2),
                     "ratio_over_pixels": round(ratio / pixels, 3)})
    return rows


def _train_worker(args: argparse.Namespace, arch: str, checkpointing: bool, reference: bool) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--model", arch, "--batch", str(args.train_batch),
           "--threads", str(args.threads), "--steps", "3"]
    if checkpointing:
        cmd.append("--checkpointing")
    if reference:
        cmd += ["--impl", args.reference] + (["--impl-path", args.reference_path] if args.reference_path else [])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_train(args: argparse.Namespace, archs: List[str]) -> List[Dict[str, Any]]:
    """Each configuration in a fresh process (peak RSS is per process), the configurations
    alternated over ``--train-repeats`` rounds; median step time and largest peak RSS."""
    rows = []
    for arch in archs:
        configs = [("ours", False), ("ours", True)] + ([("reference", False)] if args.reference else [])
        runs: Dict[Any, List[Dict[str, Any]]] = {c: [] for c in configs}
        for _ in range(args.train_repeats):
            for impl, ckpt in configs:
                runs[(impl, ckpt)].append(_train_worker(args, arch, ckpt, impl == "reference"))
        ref_ms = ref_rss = None
        if args.reference:
            ref_ms = statistics.median(r["median_ms"] for r in runs[("reference", False)])
            ref_rss = max(r["peak_rss_mb"] for r in runs[("reference", False)])
        for (impl, ckpt), rs in runs.items():
            ms = statistics.median(r["median_ms"] for r in rs)
            rss = max(r["peak_rss_mb"] for r in rs)
            rows.append({"model": arch, "impl": impl, "batch": args.train_batch, "checkpointing": ckpt,
                         "ms": round(ms, 1), "peak_rss_mb": round(rss),
                         "rss_before_mb": round(statistics.median(r["rss_before_mb"] for r in rs)),
                         "speedup_vs_reference": round(ref_ms / ms, 2) if ref_ms else "",
                         "rss_vs_reference": round(rss / ref_rss, 2) if ref_rss else ""})
            print(rows[-1], flush=True)
    return rows


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Write ``data`` to ``path`` (folders created) and say so. Every file names the machine first:
    CPU model, core count, the ISA flags that decide which path is fastest (AVX2, AVX-512,
    AVX512-BF16, AMX) and the machine kind (see :func:`hrformer.fast.cpu.machine_info`), and the
    allocator the process ran on (:func:`hrformer.fast.memory.allocator`)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({**machine_info(), "allocator": allocator(), **data}, f, indent=1)
    print(f"\nwrote {path}")


def table(rows: List[Dict[str, Any]], cols: List[str]) -> str:
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t", "s", "b"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--sizes", nargs="+", default=["256x192"], choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=["eager", "fused"], choices=list(MODES))
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--scaling", action="store_true", help="also time 512x384 and 1024x768; report time ratios")
    ap.add_argument("--no-inference", action="store_true", help="skip the inference table")
    ap.add_argument("--train", action="store_true", help="training step, with and without checkpointing")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-repeats", type=int, default=2, help="fresh processes per training configuration")
    add_timing_arguments(ap)
    ap.add_argument("--isolate", action="store_true",
                    help="each mode in a process of its own, against the reference timed there")
    ap.add_argument("--json", default="benchmarks/out/results.json")
    args = ap.parse_args(argv)
    configure_process(args)
    if args.scaling:
        args.sizes = list(SIZES)

    reference = load_builder(args.reference, args.reference_path) if args.reference else None
    archs = [f"hrformer_{m}" for m in args.models]
    results: Dict[str, Any] = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
                               "inference": [], "scaling": [], "train": []}
    if not args.no_inference and args.isolate:
        results["inference"] = bench_isolated(args, sys.argv[1:] if argv is None else argv)
    elif not args.no_inference:
        results["inference"] = bench_inference(args, reference, archs)
        results["scaling"] = scaling_rows(results["inference"])
    if args.train:
        results["train"] = bench_train(args, archs)

    print()
    if results["inference"]:
        print(table(results["inference"], ["model", "mode", "dtype", "size", "batch", "ms", "min_ms", "img_per_s",
                                            "speedup_vs_reference", "max_rel_error", "noisy_blocks"]
                    + (["reference_ms"] if args.isolate else [])))
    if results["scaling"]:
        print("\n" + table(results["scaling"], ["model", "mode", "dtype", "batch", "size", "pixel_ratio",
                                                "time_ratio", "ratio_over_pixels"]))
    if results["train"]:
        print("\n" + table(results["train"], ["model", "impl", "batch", "checkpointing", "ms", "peak_rss_mb",
                                              "rss_before_mb", "speedup_vs_reference", "rss_vs_reference"]))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""torch.compile compiled once for every batch size against once per batch size: compile times,
recompilations and speed (issue 22, item 3).

    python -m benchmarks.compile_dynamic --models t --batches 1 8
    HRFORMER_ORIGINAL=/path/to/HRFormer/cls python -m benchmarks.compile_dynamic --models t s \\
        --batches 1 8 --reference benchmarks.original:build --json benchmarks/results/cpu_compile_dynamic.json

For each model (the backbone of ``benchmarks.impls.ours``, ``fuse_for_inference()``, fp32, 256x192):

- **static**: ``torch.compile(fullgraph=True, dynamic=False)`` with inductor freezing, one compiled
  object called at each of ``--batches``: every new batch size recompiles;
- **dynamic batch**: the same with the batch dimension marked unbacked
  (``benchmarks.impls.DynamicBatch``): its first call (at ``--batches[0]``) compiles, then it is
  called at the other ``--batches`` and at ``--new-batches`` under
  ``torch.compiler.set_stance("fail_on_recompile")``, so a recompilation raises (it is then
  counted and allowed).

Reported per variant: the first call's time (the compile), the first call's time at each new batch
size, the graphs compiled (``torch._dynamo.utils.counters["stats"]["unique_graphs"]`` before and
after each call) and the recompilations; then the steady-state milliseconds per call at each of
``--batches`` of the fused eager model, both compiled variants and ``--reference`` (timed
interleaved, ``benchmarks/timing.py``), with speed-ups as ratios to the reference in the same run
and each variant's largest error relative to the fused eager model's outputs.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from typing import Any, Dict, List, Optional

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from .impls import compile_for_inference, load_builder, ours
from .run import forward_fn, max_rel_error, table, write_json
from .timing import add_timing_arguments, configure_process, interleaved

SIZE = (256, 192)
VARIANTS = {"static": "fused + compile, dynamic=False", "dynamic": "fused + compile, dynamic batch"}


def graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"]


def first_call(model, x: torch.Tensor, expected: List[torch.Tensor], fail_on_recompile: bool) -> Dict[str, Any]:
    """Time one call of ``model`` on ``x``; the graphs it compiled; its error against ``expected``.
    ``fail_on_recompile``: under ``set_stance("fail_on_recompile")``; if that raises, the call is
    repeated with recompilation allowed and ``refused_recompile`` says so."""
    before, refused = graphs_compiled(), False
    t = time.perf_counter()
    with torch.inference_mode():
        if fail_on_recompile:
            try:
                with torch.compiler.set_stance("fail_on_recompile"):
                    out = model(x)
            except Exception as e:  # a recompilation: count it, then let it happen
                refused = True
                print(f"  batch {x.shape[0]}: recompiles ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                      flush=True)
                t = time.perf_counter()
                out = model(x)
        else:
            out = model(x)
    seconds = time.perf_counter() - t
    return {"batch": int(x.shape[0]), "first_call_s": round(seconds, 2), "graphs_compiled": graphs_compiled() - before,
            "refused_recompile": refused, "max_rel_error": float(f"{max_rel_error(out, expected):.2g}")}


def bench_model(args: argparse.Namespace, arch: str, reference) -> Dict[str, List[Dict[str, Any]]]:
    torch._dynamo.reset()  # the code objects' caches are shared by every instance of the class
    torch.manual_seed(0)
    fused = ours(arch).eval().fuse_for_inference()
    sizes = list(dict.fromkeys(args.batches + args.new_batches))
    xs = {b: torch.randn(b, 3, *SIZE, generator=torch.Generator().manual_seed(b)) for b in sizes}
    with torch.inference_mode():
        expected = {b: [t.float() for t in fused(x)] for b, x in xs.items()}

    compiles, summary = [], []
    compiled = {}
    for variant in VARIANTS:
        model = compile_for_inference(copy.deepcopy(fused), dynamic_batch=variant == "dynamic")
        calls = args.batches if variant == "static" else sizes
        rows = []
        for i, b in enumerate(calls):
            row = first_call(model, xs[b], expected[b], fail_on_recompile=variant == "dynamic" and i > 0)
            row.update({"model": arch, "variant": variant, "new_batch_size": i > 0})
            rows.append(row)
            print(row, flush=True)
        compiled[variant] = model
        compiles += rows
        new = [r["first_call_s"] for r in rows[1:]]
        summary.append({"model": arch, "variant": variant, "first_batch": rows[0]["batch"],
                        "first_call_s": rows[0]["first_call_s"],
                        "new_batch_sizes": [r["batch"] for r in rows[1:]],
                        "new_batch_first_call_s": new, "new_batch_first_call_max_s": max(new) if new else "",
                        "graphs": sum(r["graphs_compiled"] for r in rows),
                        "recompilations": sum(r["graphs_compiled"] for r in rows[1:])})

    models: Dict[str, Any] = {"fused": fused, **{f"fused+{v}-compile": m for v, m in compiled.items()}}
    if reference is not None:
        models = {"reference": reference(arch).eval(), **models}
    inference = []
    for b in args.batches:
        x = xs[b]
        with torch.inference_mode():
            errors = {mode: max_rel_error(m(x), expected[b]) for mode, m in models.items() if mode != "reference"}
        before = graphs_compiled()
        samples = interleaved({mode: forward_fn(m, x) for mode, m in models.items()}, reps=args.repeats,
                              warmup=args.warmup, block_s=args.block, quiet_only=not args.no_retry)
        if graphs_compiled() != before:
            raise RuntimeError(f"{arch} batch {b}: a graph was compiled while timing")
        base = samples.get("reference")
        for mode, s in samples.items():
            ms = s.median * 1e3
            inference.append({"model": arch, "mode": mode, "batch": b, "ms": round(ms, 1),
                              "min_ms": round(s.min * 1e3, 1), "img_per_s": round(b * 1e3 / ms, 2),
                              "speedup_vs_reference": round(base.median * 1e3 / ms, 2) if base else "",
                              "speedup_vs_fused": round(samples["fused"].median * 1e3 / ms, 2),
                              "max_rel_error": float(f"{errors[mode]:.2g}") if mode in errors else "",
                              "noisy_blocks": s.discarded})
            print(inference[-1], flush=True)
    return {"compile": compiles, "summary": summary, "inference": inference}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8],
                    help="timed batch sizes; the first is where both variants compile")
    ap.add_argument("--new-batches", nargs="*", type=int, default=[2, 16],
                    help="more batch sizes the dynamic-batch variant is called at once (16: above the "
                         "2..15 guard a backed dynamic batch gets)")
    add_timing_arguments(ap)
    ap.add_argument("--json", default="benchmarks/out/compile_dynamic.json")
    args = ap.parse_args(argv)
    configure_process(args)
    torch._dynamo.config.recompile_limit = 64  # counted here, never a reason to fall back to eager

    reference = load_builder(args.reference, args.reference_path) if args.reference else None
    results: Dict[str, Any] = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
                               "size": "x".join(map(str, SIZE)), "dtype": "fp32", "inductor_freezing": True,
                               "variants": VARIANTS, "compile": [], "summary": [], "inference": []}
    for m in args.models:
        for key, rows in bench_model(args, f"hrformer_{m}", reference).items():
            results[key] += rows

    print("\n" + table(results["summary"], ["model", "variant", "first_batch", "first_call_s", "new_batch_sizes",
                                            "new_batch_first_call_s", "recompilations"]))
    print("\n" + table(results["inference"], ["model", "mode", "batch", "ms", "min_ms", "img_per_s",
                                              "speedup_vs_reference", "speedup_vs_fused", "max_rel_error",
                                              "noisy_blocks"]))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GPU benchmark: one prepared run that checks, then times, on a CUDA device.

    python -m benchmarks.gpu --out results.json [--reference MODULE:FACTORY --reference-path DIR]
    HRFORMER_ORIGINAL=<HRFormer checkout>/cls python -m benchmarks.gpu --reference benchmarks.original:build

Sections, in this order (each row printed as it is measured, the JSON rewritten after each):
1. agreement: our backbone on the GPU against the same model on the CPU (fp32, TF32 off), and,
   with ``--reference``, against the reference implementation carrying the same weights;
2. inference: T/S/B backbones, batch 1/8/32 at 256x192, eager / fused / reference in fp32, bf16 and
   fp16 autocast (CUDA events, median of timed blocks, variants interleaved);
3. scaling: 512x384 and 1024x768 over 256x192 (HRFormer-S, batch 8, bf16);
4. training: forward + backward step and peak allocated memory, with and without checkpointing;
5. graphs: the fused model captured once and replayed as a CUDA graph (no Python per call);
6. compiled: ``torch.compile(fullgraph=True)``, while ``--budget-s`` allows (compiling is slow);
7. finetune: the pose fine-tuning step of :mod:`benchmarks.finetune` (HRFormer-S, ``--train-batch``
   32, AdamW; fp32, bf16 autocast, + channels-last, + ``torch.compile``) against the reference in
   fp32 and bf16, from the same weights (first losses compared).

The reference factory is the one ``benchmarks.run --reference`` takes; if its model has
``original_state_dict()`` (the weights in an original layout), our model is loaded from those
weights with :func:`hrformer.from_original` and the outputs compared. TF32 stays off for fp32 so
that fp32 means fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch

import hrformer
from hrformer.fast.cpu import machine_info

from . import finetune
from .impls import load_builder, ours, prepare
from .run import SIZES, max_rel_error, table
from .timing import seconds_per_call

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SECTIONS = ("agreement", "inference", "scaling", "train", "graphs", "compiled", "finetune")


def interleaved(fns: Dict[str, Callable[[], object]], reps: int, warmup: int, block_s: float) -> Dict[str, List[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    iters = {k: max(1, int(block_s / max(seconds_per_call(fn, 1, "cuda"), 1e-6))) for k, fn in fns.items()}
    out: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            out[k].append(seconds_per_call(fn, iters[k], "cuda"))
    return out


def forward_fn(model: torch.nn.Module, x: torch.Tensor, dtype: str) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode(), torch.autocast("cuda", dtype=DTYPES[dtype] or torch.float32,
                                                    enabled=DTYPES[dtype] is not None):
            return model(x)

    return run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.perf_counter()
        self.reference = load_builder(args.reference, args.reference_path) if args.reference else None
        self.results: Dict[str, Any] = {
            "device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "tf32": False, **machine_info(), **{section: [] for section in SECTIONS},
        }

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def emit(self, section: str, row: Dict[str, Any]) -> None:
        self.results[section].append(row)
        print(section, row, flush=True)
        with open(self.args.out, "w") as f:
            json.dump(self.results, f, indent=1)

    def input(self, batch: int, size: str) -> torch.Tensor:
        return torch.randn(batch, 3, *SIZES[size], generator=torch.Generator().manual_seed(0)).cuda()

    def our_model(self, arch: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return ours(arch)

    def agreement(self, arch: str) -> None:
        model = self.our_model(arch).eval()
        x = self.input(2, "256x192")
        with torch.inference_mode():
            cpu = model(x.cpu())
            model.cuda()
            gpu = model(x)
            row = {"model": arch, "gpu_vs_cpu_fp32": max_rel_error(gpu, cpu)}
            for dtype in ("bf16", "fp16"):
                with torch.autocast("cuda", dtype=DTYPES[dtype]):
                    out = model(x)
                row[f"{dtype}_vs_fp32"] = max_rel_error(out, gpu)
                row[f"{dtype}_finite"] = all(bool(torch.isfinite(o).all()) for o in out)
            fused = prepare(self.our_model(arch), "fused").cuda()
            row["fused_vs_eager"] = max_rel_error(fused(x), gpu)
            ref = self.reference(arch).eval() if self.reference is not None else None
            if ref is not None and hasattr(ref, "original_state_dict"):
                ours_ref = hrformer.from_original(ref.original_state_dict(), arch=arch).cuda().eval()
                ref.cuda()
                ref_out = ref(x)
                ours_out = ours_ref.forward_features(x)
                row["ours_vs_reference_fp32"] = max_rel_error(ours_out, ref_out)
        self.emit("agreement", row)

    def inference(self, arch: str) -> None:
        a = self.args
        models = {mode: prepare(self.our_model(arch), mode).cuda() for mode in ("eager", "fused")}
        if self.reference is not None:
            models = {"reference": self.reference(arch).eval().cuda(), **models}
        for dtype in a.dtypes:
            for batch in a.batches:
                x = self.input(batch, "256x192")
                times = interleaved({m: forward_fn(model, x, dtype) for m, model in models.items()},
                                    a.repeats, a.warmup, a.block)
                ref = statistics.median(times["reference"]) if "reference" in times else None
                for mode, ts in times.items():
                    ms = statistics.median(ts) * 1e3
                    self.emit("inference", {
                        "model": arch, "mode": mode, "dtype": dtype, "size": "256x192", "batch": batch,
                        "ms": round(ms, 2), "img_per_s": round(batch * 1e3 / ms, 1),
                        "speedup_vs_reference": round(ref * 1e3 / ms, 2) if ref else "",
                    })
        del models
        torch.cuda.empty_cache()

    def scaling(self, arch: str, batch: int, dtype: str) -> None:
        model = prepare(self.our_model(arch), "fused").cuda()
        base = None
        for size in SIZES:
            ts = interleaved({size: forward_fn(model, self.input(batch, size), dtype)},
                             self.args.repeats, self.args.warmup, self.args.block)[size]
            ms = statistics.median(ts) * 1e3
            base = base or ms
            pixels = SIZES[size][0] * SIZES[size][1] / (256 * 192)
            self.emit("scaling", {"model": arch, "mode": "fused", "dtype": dtype, "batch": batch, "size": size,
                                  "ms": round(ms, 2), "pixel_ratio": pixels, "time_ratio": round(ms / base, 2),
                                  "ratio_over_pixels": round(ms / base / pixels, 3)})

    def train(self, arch: str, batch: int, dtype: str) -> None:
        configs = [("ours", False), ("ours", True)] + ([("reference", False)] if self.reference else [])
        rows = []
        for impl, ckpt in configs:
            torch.manual_seed(0)
            model = (self.reference(arch) if impl == "reference" else ours(arch)).cuda().train()
            if ckpt:
                model.set_grad_checkpointing(True)
            x = self.input(batch, "256x192")

            def step() -> None:
                with torch.autocast("cuda", dtype=DTYPES[dtype] or torch.float32, enabled=DTYPES[dtype] is not None):
                    loss = sum(o.float().mean() for o in model(x))
                loss.backward()
                model.zero_grad(set_to_none=True)

            step()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            ts = [seconds_per_call(step, 3, "cuda") for _ in range(self.args.repeats)]
            peak = torch.cuda.max_memory_allocated() / 2**20
            rows.append({"model": arch, "impl": impl, "dtype": dtype, "batch": batch, "checkpointing": ckpt,
                         "ms": round(statistics.median(ts) * 1e3, 1), "peak_mb": round(peak)})
            del model
            torch.cuda.empty_cache()
        ref = next((r for r in rows if r["impl"] == "reference"), None)
        for r in rows:
            r["speedup_vs_reference"] = round(ref["ms"] / r["ms"], 2) if ref else ""
            r["memory_vs_reference"] = round(r["peak_mb"] / ref["peak_mb"], 2) if ref and ref["peak_mb"] else ""
            self.emit("train", r)

    def graphs(self, arch: str, dtype: str) -> None:
        """Fused model replayed as one captured CUDA graph: the forward pass issues hundreds of small
        kernels, so at these sizes the GPU mostly waits for Python to launch them."""
        model = prepare(self.our_model(arch), "fused").cuda()
        for batch in self.args.batches:
            x = self.input(batch, "256x192")
            run_fused = forward_fn(model, x, dtype)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    run_fused()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    static_out = run_fused()
            except RuntimeError as e:  # an op that cannot be captured
                self.emit("graphs", {"model": arch, "dtype": dtype, "batch": batch, "error": str(e)[:300]})
                return
            graph.replay()
            torch.cuda.synchronize()
            err = max_rel_error(static_out, run_fused())
            times = interleaved({"fused": run_fused, "fused+cuda_graph": graph.replay}, self.args.repeats,
                                self.args.warmup, self.args.block)
            base = statistics.median(times["fused"])
            for mode, ts in times.items():
                ms = statistics.median(ts) * 1e3
                self.emit("graphs", {"model": arch, "mode": mode, "dtype": dtype, "batch": batch, "ms": round(ms, 2),
                                     "img_per_s": round(batch * 1e3 / ms, 1),
                                     "speedup_vs_fused": round(base * 1e3 / ms, 2),
                                     "rel_err_vs_fused": err if mode != "fused" else ""})
            del graph, static_out
        del model
        torch.cuda.empty_cache()

    def compiled(self, arch: str, batch: int, dtype: str) -> None:
        if self.elapsed() > self.args.budget_s:
            print(f"compiled {arch} {dtype} b{batch}: skipped, past the time budget", flush=True)
            return
        x = self.input(batch, "256x192")
        fused = prepare(self.our_model(arch), "fused").cuda()
        t = time.perf_counter()
        compiled = torch.compile(fused, fullgraph=True)
        run = forward_fn(compiled, x, dtype)
        run()
        compile_s = time.perf_counter() - t
        times = interleaved({"fused": forward_fn(fused, x, dtype), "fused+compiled": run},
                            self.args.repeats, 1, self.args.block)
        with torch.inference_mode():
            err = max_rel_error(forward_fn(compiled, x, dtype)(), forward_fn(fused, x, dtype)())
        base = statistics.median(times["fused"])
        for mode, ts in times.items():
            ms = statistics.median(ts) * 1e3
            self.emit("compiled", {"model": arch, "mode": mode, "dtype": dtype, "batch": batch, "ms": round(ms, 2),
                                   "img_per_s": round(batch * 1e3 / ms, 1), "speedup_vs_fused": round(base * 1e3 / ms, 2),
                                   "compile_s": round(compile_s, 1) if mode != "fused" else "",
                                   "rel_err_vs_fused": err if mode != "fused" else ""})

    def finetune(self, arch: str, batch: int) -> None:
        a = self.args
        ft_args = argparse.Namespace(
            device="cuda", model=arch.rsplit("_", 1)[1], batch=batch, size="256x192", keypoints=17,
            variants=list(finetune.VARIANTS), reference=a.reference, reference_path=a.reference_path,
            warmup=3, steps=5, repeats=a.repeats,
        )
        result = finetune.run(ft_args)
        for row in result["rows"]:
            self.emit("finetune", row)
        if result["agreement"]:
            self.emit("finetune", {"model": arch, "variant": "agreement", **result["agreement"]})
        torch.cuda.empty_cache()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["t", "s", "b"], choices=["t", "s", "b"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16", "fp16"], choices=list(DTYPES))
    ap.add_argument("--reference", help="MODULE:FACTORY of another implementation (see benchmarks.run)")
    ap.add_argument("--reference-path")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--block", type=float, default=0.2, help="seconds per timing block")
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=400, help="no compiled run starts after this many seconds")
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--out", default="benchmarks/out/gpu.json")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    bench = Bench(args)
    archs = [f"hrformer_{m}" for m in args.models]
    steps = {
        "agreement": lambda: [bench.agreement(arch) for arch in archs],
        "inference": lambda: [bench.inference(arch) for arch in archs],
        "scaling": lambda: bench.scaling("hrformer_s", 8, "bf16"),
        "train": lambda: [bench.train("hrformer_s", args.train_batch, dtype) for dtype in ("fp32", "bf16")],
        "graphs": lambda: [bench.graphs(arch, dtype) for arch in archs for dtype in ("fp32", "bf16")],
        "compiled": lambda: [bench.compiled(arch, 8, "bf16") for arch in archs],
        "finetune": lambda: bench.finetune("hrformer_s", args.train_batch),
    }
    for section in args.sections:
        steps[section]()
    print(f"\n{bench.results['device']}, torch {torch.__version__}, {bench.elapsed():.0f} s")
    for section in args.sections:
        rows = bench.results[section]
        print(f"\n{section}\n{table(rows, list(rows[0])) if rows else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Before/after timing of the inference fast path, in one process: the fused model of another
checkout of this package (e.g. the class-surgery ``fuse_for_inference`` of an earlier commit) against
this one, and the cost of returning the outputs in the caller's memory format (this checkout with
the conversion bypassed), fused and unfused. Interleaved rounds (``benchmarks/timing.py``).

    git archive <commit> src/hrformer | tar -x -C /tmp/old && mv /tmp/old/src/hrformer /tmp/old/hrformer_old
    python -m benchmarks.fast_path_ab --old /tmp/old --models t s --batches 1 8 --out results/cpu_fast_path_ab.json
    python -m benchmarks.fast_path_ab --old /tmp/old --fused-only --dtype bf16 --heads none --models t s
    python -m benchmarks.fast_path_ab --old /tmp/old --fused-only --heads none --models t --batches 1 --between-ops 12

The old package must import as ``hrformer_old`` (the package uses relative imports only, so a renamed
copy works). ``--between-ops ROUNDS`` adds the time between the ops of each fused model
(``benchmarks.profile_ops``' "Python between ops", unscaled: the profiler's timeline over 2 calls),
the median of ROUNDS profiled rounds alternated between the models, and the ops per call. Models:
the backbone with the official classification code's semantics
(:func:`benchmarks.impls.ours`) and the pose model (heatmaps only), 256x192, fp32.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
from typing import Callable, Dict

import torch

from .run import write_json
from .timing import interleaved


def _build(lib, name: str, head):
    kwargs = {"upsample_mode": "nearest"} if head is None else {}
    torch.manual_seed(0)
    return lib.create_model(name, head=head, **kwargs).eval()


def _without_layout_conversion(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose outputs stay as the network leaves them (channels-last), as before the change."""
    model = copy.deepcopy(model)
    model._like_input = lambda out, x: out
    return model


def variants(old_lib, name: str, head, fused_only: bool = False, dtype=None) -> Dict[str, torch.nn.Module]:
    """The models to time; ``fused_only``: the fused model of this checkout and of the old package
    only; ``dtype``: what both are fused with (``fuse_for_inference(dtype=...)``)."""
    import hrformer

    eager = _build(hrformer, name, head)
    fused = copy.deepcopy(eager).fuse_for_inference(dtype=dtype)
    models = {"eager": eager} if fused_only else {
        "eager": eager,
        "eager_no_layout": _without_layout_conversion(eager),
        "fused": fused,
        "fused_no_layout": _without_layout_conversion(fused),
    }
    if fused_only:
        models["fused"] = fused
    if old_lib is not None:
        old = _build(old_lib, name, head)
        old.load_state_dict(eager.state_dict())
        models["old_fused"] = old.fuse_for_inference(dtype=dtype)
    return models


def conversion_ms(name: str, head, batch: int, h: int, w: int, repeats: int = 200) -> Dict[str, float]:
    """The layout conversion alone: milliseconds (best of ``repeats``) to make the model's
    channels-last outputs NCHW-contiguous, next to one forward of the fused model. The copy is
    a fixed cost, so a quiet machine is not needed to bound its share."""
    import time

    import hrformer

    model = _build(hrformer, name, head).fuse_for_inference()
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
    raw = _without_layout_conversion(model)
    with torch.inference_mode():
        out = raw(x)
        outs = out if isinstance(out, list) else [out]
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            [o.contiguous() for o in outs]
            best = min(best, time.perf_counter() - t)
        forward = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            model(x)
            forward = min(forward, time.perf_counter() - t)
    return {"conversion_ms": best * 1e3, "fused_forward_ms": forward * 1e3,
            "output_mb": sum(o.numel() * o.element_size() for o in outs) / 2**20}


def between_ops(runs: Dict[str, Callable[[], None]], rounds: int) -> Dict[str, Dict[str, float]]:
    """Per model: the median over ``rounds`` (alternated between the models) of the time between
    ops per call on the profiler's timeline (ms), and the ops per call."""
    from .profile_ops import profiled_classes

    seen: Dict[str, list] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, run in runs.items():
            seen[key].append(profiled_classes(run))
    return {key: {"ms": statistics.median(c["python"] for c in classes), "ops": classes[0]["top_level_ops"]}
            for key, classes in seen.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", help="directory holding the package to compare against, as hrformer_old")
    p.add_argument("--models", nargs="+", default=["t", "s"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--heads", nargs="+", default=["none", "pose"])
    p.add_argument("--size", default="256x192")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--max-tries", type=int, default=2)
    p.add_argument("--conversion-only", action="store_true",
                   help="time the layout conversion alone (best of 200) next to one fused forward")
    p.add_argument("--fused-only", action="store_true",
                   help="time the fused models only (this checkout's and --old's), not the eager ones")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="what the fused models are fused with")
    p.add_argument("--between-ops", type=int, default=0, metavar="ROUNDS",
                   help="also the time between ops per call (profiled, median of ROUNDS alternated rounds)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    tol = 5e-2 if dtype else 1e-4  # bf16: within its rounding (3.3% at worst on random weights)
    torch.set_num_threads(args.threads)
    if args.conversion_only:
        h, w = (int(v) for v in args.size.split("x"))
        for arch in args.models:
            for head_name in args.heads:
                for batch in args.batches:
                    r = conversion_ms(f"hrformer_{arch}", None if head_name == "none" else head_name, batch, h, w)
                    print(f"hrformer_{arch} {head_name:5s} b{batch}: conversion {r['conversion_ms']:.3f} ms of "
                          f"{r['output_mb']:.2f} MB, fused forward {r['fused_forward_ms']:.1f} ms "
                          f"({100 * r['conversion_ms'] / r['fused_forward_ms']:.2f}%)", flush=True)
        return
    old_lib = None
    if args.old:
        sys.path.insert(0, args.old)
        old_lib = importlib.import_module("hrformer_old")
    h, w = (int(v) for v in args.size.split("x"))
    records = []
    for arch in args.models:
        name = f"hrformer_{arch}"
        for head_name in args.heads:
            head = None if head_name == "none" else head_name
            models = variants(old_lib, name, head, args.fused_only, dtype)
            # fused only: the eager model gives the reference outputs, untimed
            eager = models.pop("eager") if args.fused_only else models["eager"]
            for batch in args.batches:
                x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
                with torch.inference_mode():
                    ref = eager(x)
                    for key, model in models.items():  # the same outputs, whichever variant
                        out = model(x)
                        outs, refs = (out, ref) if isinstance(out, list) else ([out], [ref])
                        err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(outs, refs))
                        assert err < tol, (key, err)

                def call(model) -> Callable[[], None]:
                    def run() -> None:
                        with torch.inference_mode():
                            model(x)
                    return run

                runs = {k: call(m) for k, m in models.items()}
                samples = interleaved(runs, reps=args.repeats, max_tries=args.max_tries)
                row = {"model": name, "head": head_name, "batch": batch, "size": args.size, "dtype": args.dtype,
                       "ms": {k: s.median * 1e3 for k, s in samples.items()},
                       "ms_min": {k: s.min * 1e3 for k, s in samples.items()},
                       "discarded": {k: s.discarded for k, s in samples.items()}}
                if args.between_ops:
                    row["between_ops"] = between_ops(runs, args.between_ops)
                records.append(row)
                ms = row["ms"]
                line = "  ".join(f"{k} {v:8.1f}" for k, v in ms.items())
                ratios = "" if args.fused_only else (f"layout cost eager {ms['eager'] / ms['eager_no_layout']:.3f} "
                                                     f"fused {ms['fused'] / ms['fused_no_layout']:.3f}")
                if "old_fused" in ms:
                    ratios += f"  new/old fused {ms['fused'] / ms['old_fused']:.3f}"
                print(f"{name} {head_name:5s} b{batch}: {line} ms | {ratios}", flush=True)
                for key, b in row.get("between_ops", {}).items():
                    print(f"    {key}: {b['ms']:.2f} ms between {b['ops']:.0f} ops per call", flush=True)
    if args.out:
        write_json(args.out, {"threads": args.threads, "torch": torch.__version__, "dtype": args.dtype,
                              "records": records})


if __name__ == "__main__":
    main()

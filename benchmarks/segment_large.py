"""Time and peak memory of segmentation on large images: whole image vs sliding windows, fp32 / bf16.

    python -m benchmarks.segment_large                       # every case below, one run each
    python -m benchmarks.segment_large --cases t_2000x3000_slide s_1024x2048_whole
    python -m benchmarks.segment_large --list

Each case runs once in its own Python process (so its peak RSS, ``VmHWM`` from
``/proc/self/status``, is its own) with ``torch.set_num_threads(--threads)``: an untrained
``create_model(arch, head="ocr", num_classes=19)`` in eval mode (weights do not change time or
memory), a random uint8 RGB image, one ``hrformer.segmentation.predict`` call. Reported: wall time
and process CPU time of that call, RSS before it (library + model + image) and the peak. Sliding
windows are 1024x1024 with stride 768 (mmseg's Cityscapes ``slide`` test uses 769 / 513). ``fused``
is ``model.fuse_for_inference()``; ``bf16`` is ``fuse_for_inference(dtype=torch.bfloat16)``, skipped
(and said so) when that signature has no ``dtype``. Results: a table on stdout and
``benchmarks/results/cpu_segment_large.json`` (with the CPU model, core count and ISA flags).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

RESULTS = Path(__file__).resolve().parent / "results"
SLIDE = {"crop_size": (1024, 1024), "stride": (768, 768)}

# name -> (architecture, (H, W), window settings or None for whole image, variant)
CASES: Dict[str, Any] = {
    "t_2000x3000_slide": ("hrformer_t", (2000, 3000), SLIDE, "reference"),
    "t_2000x3000_whole": ("hrformer_t", (2000, 3000), None, "reference"),
    "s_1024x2048_whole": ("hrformer_s", (1024, 2048), None, "reference"),
    "s_1024x2048_whole_fused": ("hrformer_s", (1024, 2048), None, "fused"),
    "b_1024x2048_whole": ("hrformer_b", (1024, 2048), None, "reference"),
    "b_1024x2048_whole_fused": ("hrformer_b", (1024, 2048), None, "fused"),
    "s_4000x3000_slide": ("hrformer_s", (4000, 3000), SLIDE, "reference"),
    "s_4000x3000_whole": ("hrformer_s", (4000, 3000), None, "reference"),
    "s_1024x2048_whole_bf16": ("hrformer_s", (1024, 2048), None, "bf16"),
    "b_1024x2048_whole_bf16": ("hrformer_b", (1024, 2048), None, "bf16"),
}

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8")


def machine() -> Dict[str, Any]:
    """CPU model, core count and the ISA flags that decide fp32 / bf16 kernels (from ``lscpu``)."""
    info: Dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("Flags", "").split())
    info.update(cpu_model=fields.get("Model name", platform.processor() or "unknown"),
                cpus=int(fields.get("CPU(s)", os.cpu_count() or 0)),
                isa={flag: flag in flags for flag in ISA_FLAGS})
    import torch

    info.update(torch=torch.__version__, threads=torch.get_num_threads())
    return info


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run_case(name: str, threads: int) -> Dict[str, Any]:
    """One case in this process (the child side)."""
    import torch

    import hrformer
    from hrformer.segmentation import predict

    torch.set_num_threads(threads)
    arch, (height, width), window, variant = CASES[name]
    torch.manual_seed(0)
    model = hrformer.create_model(arch, head="ocr", num_classes=19).eval()
    if variant == "fused":
        model.fuse_for_inference()
    elif variant == "bf16":
        if "dtype" not in inspect.signature(model.fuse_for_inference).parameters:
            return {"skipped": "fuse_for_inference has no dtype argument (bf16 inference not available)"}
        model.fuse_for_inference(dtype=torch.bfloat16)
    if variant != "reference":  # fuse_for_inference leaves its new submodules in training mode (reported)
        model.eval()
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    rss_before = _status_mb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    result = predict(model, image, max_memory_gb=1000, **(window or {}))  # measured beyond the default budget
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert result.logits.shape == (19, height, width) and bool(torch.isfinite(result.logits).all())
    return {"arch": arch, "size": [height, width], "mode": "slide" if window else "whole",
            "window": {k: list(v) for k, v in window.items()} if window else None, "variant": variant,
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "rss_before_mb": round(rss_before),
            "peak_rss_mb": round(_status_mb("VmHWM"))}


def markdown(paths: List[str]) -> str:
    """The measured cases of result files as one Markdown table (each file's CPU in its rows)."""
    lines = ["| model | image | mode | weights | wall s | CPU s | RSS before MB | peak RSS MB | file |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in paths:
        data = json.loads(Path(path).read_text())
        for name, row in data["cases"].items():
            if "wall_s" not in row:
                lines.append(f"| {name} | | | | {row.get('skipped') or row.get('error')} | | | | {Path(path).name} |")
                continue
            mode = row["mode"] if row["mode"] == "whole" else \
                f"slide {row['window']['crop_size'][0]}x{row['window']['crop_size'][1]} / {row['window']['stride'][0]}"
            weights = {"reference": "fp32", "fused": "fused fp32", "bf16": "fused bf16"}[row["variant"]]
            lines.append(f"| {row['arch']} + OCR | {row['size'][0]}x{row['size'][1]} | {mode} | {weights} | "
                         f"{row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['rss_before_mb']} | {row['peak_rss_mb']} | "
                         f"{Path(path).name} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1200, help="seconds per case before it is given up")
    p.add_argument("--out", default=str(RESULTS / "cpu_segment_large.json"))
    p.add_argument("--resume", action="store_true", help="keep the cases already measured in --out, run the others")
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    p.add_argument("--markdown", nargs="+", metavar="JSON", help="print the cases of these result files as a "
                   "Markdown table (for RESULTS.md) and exit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(args.markdown))
        return 0
    if args.child:
        print(json.dumps(run_case(args.child, args.threads)))
        return 0
    if args.list:
        for name, (arch, size, window, variant) in CASES.items():
            print(f"{name:26s} {arch} {size[0]}x{size[1]} {'slide' if window else 'whole'} {variant}")
        return 0
    report: Dict[str, Any] = {"machine": machine(), "threads": args.threads, "cases": {}}
    if args.resume and Path(args.out).exists():
        kept = json.loads(Path(args.out).read_text())
        if kept.get("machine", {}).get("cpu_model") == report["machine"]["cpu_model"]:
            report["cases"] = {k: v for k, v in kept["cases"].items() if "wall_s" in v}
    print(f"# {report['machine']['cpu_model']}, {report['machine']['cpus']} CPUs, "
          f"ISA {' '.join(k for k, v in report['machine']['isa'].items() if v)}; {args.threads} threads")
    print(f"{'case':26s} {'wall s':>8s} {'cpu s':>8s} {'RSS before MB':>14s} {'peak RSS MB':>12s}")
    for name in args.cases:
        if name in report["cases"]:
            row = report["cases"][name]
            print(f"{name:26s} {row['wall_s']:8.1f} {row['cpu_s']:8.1f} {row['rss_before_mb']:14d} {row['peak_rss_mb']:12d}"
                  " (kept)")
            continue
        cmd = [sys.executable, "-m", "benchmarks.segment_large", "--child", name, "--threads", str(args.threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  cwd=Path(__file__).resolve().parent.parent)
            lines = proc.stdout.strip().splitlines()
            row = json.loads(lines[-1]) if proc.returncode == 0 and lines else \
                {"error": (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]}
        except subprocess.TimeoutExpired:
            row = {"skipped": f"over --timeout {args.timeout:g} s"}
        report["cases"][name] = row
        if "wall_s" in row:
            print(f"{name:26s} {row['wall_s']:8.1f} {row['cpu_s']:8.1f} {row['rss_before_mb']:14d} {row['peak_rss_mb']:12d}")
        else:
            print(f"{name:26s} {row.get('skipped') or row.get('error')}")
        sys.stdout.flush()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # after every case: partial runs keep theirs
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

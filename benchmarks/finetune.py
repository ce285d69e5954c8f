"""Fine-tuning step benchmark: HRFormer pose model, AdamW, against the original code in the same run.

    python -m benchmarks.finetune --device cuda --model s --batch 32            # ours only
    HRFORMER_ORIGINAL=<HRFormer checkout>/cls python -m benchmarks.finetune --device cuda \\
        --reference benchmarks.original:build --out benchmarks/out/finetune.json

One step = forward, MSE loss against target heatmaps, backward, ``AdamW.step()``, gradients cleared:
what a fine-tuning loop does per batch. The network is the same on both sides: the backbone up to
stage 4 with the official classification code's semantics (four fused maps, nearest upsampling,
relative position bias) and a 1x1 convolution to ``--keypoints`` heatmaps on the stride-4 map.

Variants (``--variants``), each timed interleaved with the others and the reference:

- ``fp32``: our model in fp32 (TF32 off on CUDA);
- ``bf16``: the same under ``torch.autocast(bfloat16)``;
- ``bf16+cl``: and the parameters in channels-last memory format (the activations already are);
- ``bf16+cl+compiled``: and ``torch.compile`` (inductor, training graph), compile time reported;
- the reference (``--reference``) in fp32 and under bf16 autocast.

Before timing, our model is loaded with the reference's weights where the reference exposes them
(``original_state_dict()``, as ``benchmarks.original`` does) and the first losses are compared:
``*_first_loss_rel_diff`` says both run the same network. Reported per variant: median step time,
images per second, speed-up over the reference in fp32 and in bf16, and the memory a step takes on
top of what stays allocated (CUDA: peak allocated during the step minus allocated before it, i.e.
activations, gradients and temporaries; CPU: not measured, see ``benchmarks.train_step`` for RSS).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

import hrformer

from .impls import load_builder
from .run import SIZES, table, write_json
from .timing import seconds_per_call

VARIANTS = ("fp32", "bf16", "bf16+cl", "bf16+cl+compiled")


def our_pose_model(arch: str, keypoints: int) -> nn.Module:
    """Ours, with the network :class:`ReferencePose` builds around the original backbone."""
    return hrformer.create_model(arch, head="pose", num_keypoints=keypoints, upsample_mode="nearest",
                                 multiscale_output=True)


class ReferencePose(nn.Module):
    """A reference backbone (``FACTORY(arch)`` of ``benchmarks.run --reference``, returning the four
    stage-4 maps) with the pose head's 1x1 convolution on its stride-4 map."""

    def __init__(self, backbone: nn.Module, channels: int, keypoints: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])


def load_reference_weights(model: nn.Module, reference: ReferencePose, arch: str) -> bool:
    """Give ``model`` the reference's weights, if the reference exposes them: in an original layout
    (``original_state_dict()``), or as one of our own backbones standing in for the reference."""
    if hasattr(reference.backbone, "original_state_dict"):
        backbone = hrformer.from_original(reference.backbone.original_state_dict(), arch=arch)
    elif isinstance(reference.backbone, hrformer.HRFormer):
        backbone = reference.backbone
    else:
        return False
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("head.")}
    state.update({"head.conv.weight": reference.head.weight, "head.conv.bias": reference.head.bias})
    model.load_state_dict(state, strict=True)
    return True


def step_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor, bf16: bool,
            losses: Optional[List[float]] = None) -> Callable[[], None]:
    """One fine-tuning step (fresh AdamW over ``model``'s parameters); appends the loss to ``losses``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)

    def step() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if losses is not None and not losses:  # the first loss only: reading it waits for the GPU
            losses.append(float(loss.detach()))

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_variants(args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """name -> (model, bf16) for our variants and the reference; our models carry the reference's
    weights where it has them. Also returns whether they were loaded."""
    arch = f"hrformer_{args.model}"
    torch.manual_seed(0)
    base = our_pose_model(arch, args.keypoints)
    variants: Dict[str, Any] = {}
    loaded = False
    if args.reference:
        build = load_builder(args.reference, args.reference_path)
        reference = ReferencePose(build(arch), base.feature_info.channels()[0], args.keypoints)
        loaded = load_reference_weights(base, reference, arch)
        variants["reference fp32"] = (reference, False)
        variants["reference bf16"] = (copy.deepcopy(reference), True)
    for name in args.variants:
        model = copy.deepcopy(base)
        if "+cl" in name:
            model = model.to(memory_format=torch.channels_last)
        variants[name] = (model, name != "fp32")
    for name, (model, bf16) in variants.items():
        model.to(device).train()
        if name.endswith("+compiled"):
            variants[name] = (torch.compile(model), bf16)
    return {"variants": variants, "loaded_reference_weights": loaded}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    device = torch.device(args.device)
    built = build_variants(args, device)
    variants = built["variants"]
    h, w = SIZES[args.size] if args.size in SIZES else (int(s) for s in args.size.split("x"))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, h, w, generator=gen).to(device)
    target = torch.rand(args.batch, args.keypoints, h // 4, w // 4, generator=gen).to(device)

    losses: Dict[str, List[float]] = {name: [] for name in variants}
    steps = {name: step_fn(m, x, target, bf16, losses[name]) for name, (m, bf16) in variants.items()}
    first_s: Dict[str, float] = {}
    for name, fn in steps.items():  # first steps: compilation, allocator and autotuning warm-up
        t = time.perf_counter()
        fn()
        _sync(device)
        first_s[name] = time.perf_counter() - t
        for _ in range(args.warmup - 1):
            fn()
    _sync(device)
    times: Dict[str, List[float]] = {name: [] for name in steps}
    peak: Dict[str, float] = {}
    for _ in range(args.repeats):  # round robin: machine drift spreads over every variant alike
        for name, fn in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)  # every variant's weights and AdamW state
            times[name].append(seconds_per_call(fn, args.steps, device.type))
            if device.type == "cuda":
                step_peak = (torch.cuda.max_memory_allocated(device) - resident) / 2**20
                peak[name] = max(peak.get(name, 0.0), step_peak)

    ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    ref32, ref16 = ms.get("reference fp32"), ms.get("reference bf16")
    rows = []
    for name in steps:
        rows.append({
            "model": f"hrformer_{args.model}", "variant": name, "batch": args.batch, "size": args.size,
            "ms": round(ms[name], 2), "img_per_s": round(args.batch * 1e3 / ms[name], 1),
            "speedup_vs_reference_fp32": round(ref32 / ms[name], 2) if ref32 else "",
            "speedup_vs_reference_bf16": round(ref16 / ms[name], 2) if ref16 else "",
            "step_peak_mb": round(peak[name]) if name in peak else "",
            "first_step_s": round(first_s[name], 1),
        })
    agreement = {}
    if built["loaded_reference_weights"]:
        # Same weights, same batch: the first losses must agree (fp32 exactly up to rounding).
        for ours_name, ref_name in (("fp32", "reference fp32"), ("bf16", "reference bf16")):
            if ours_name in losses and losses[ours_name]:
                a, b = losses[ours_name][0], losses[ref_name][0]
                agreement[f"{ours_name}_first_loss_rel_diff"] = float(f"{abs(a - b) / abs(b):.2g}")
    return {"rows": rows, "agreement": agreement, "losses_first": {k: v[0] for k, v in losses.items() if v}}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="s", choices=["t", "s", "b"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", default="256x192", help="HxW, e.g. 256x192")
    ap.add_argument("--keypoints", type=int, default=17)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--reference", help="MODULE:FACTORY of the reference backbone (see benchmarks.run)")
    ap.add_argument("--reference-path")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant (the first compiles)")
    ap.add_argument("--steps", type=int, default=5, help="steps per timing block")
    ap.add_argument("--repeats", type=int, default=3, help="timing blocks per variant, round robin")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (CPU runs)")
    ap.add_argument("--out", default="benchmarks/out/finetune.json")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("no CUDA device; pass --device cpu", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    print(table(result["rows"], list(result["rows"][0])))
    print(result["agreement"])
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    write_json(args.out, {"device": device, "torch": torch.__version__, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())

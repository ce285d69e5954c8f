"""Fine-tune HRFormer for your own dense-prediction task: a custom head on ``features_only`` maps.

Everything a real run needs, on synthetic data made here (coloured discs and squares on noise ->
a 3-class mask: background, disc, square), so it runs anywhere, offline:

- ``hrformer.create_model(..., features_only=True)``: the backbone returns the four maps
  (strides 4, 8, 16, 32); ``feature_info`` gives their channels, so the head fits any variant.
- AdamW with layer-wise learning-rate decay from the backbone's ``group_matcher``
  (``hrformer.optim.param_groups_layer_decay``): the new head learns at ``--lr``, each backbone
  layer below it ``--layer-decay`` times slower; no weight decay on biases, norms and the relative
  position bias tables.
- Gradient checkpointing (``set_grad_checkpointing``): activations recomputed in the backward pass.
- bf16 autocast only where the hardware computes bf16 natively (CPU flags ``amx_bf16`` or
  ``avx512_bf16``; a CUDA GPU with bf16): elsewhere it is emulated and slower than fp32.

    python examples/finetune_dense.py --quick                 # ~64x64 images, a few steps, prints loss A -> B
    python examples/finetune_dense.py --model hrformer_t.in1k --pretrained --steps 500 --image-size 256
    python examples/finetune_dense.py --pretrained hrt_tiny.pth          # a checkpoint on disk, any layout

Swap ``synthetic_batch`` for your data loader and ``DenseHead``'s ``num_classes`` for your labels.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

import hrformer
from hrformer.optim import param_groups_layer_decay

NUM_CLASSES = 3  # background, disc, square


def synthetic_batch(batch: int, size: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, size, size), normalised, and masks (B, size, size) with labels 0..2: each
    image has 1-3 discs or squares of random colour, size and place on a noisy background (later
    shapes drawn over earlier ones). The colour says nothing of the class: the shape does."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = 0.3 * torch.rand(batch, 3, size, size, generator=generator)
    masks = torch.zeros(batch, size, size, dtype=torch.long)
    for b in range(batch):
        for _ in range(int(torch.randint(1, 4, (), generator=generator))):
            label = int(torch.randint(1, NUM_CLASSES, (), generator=generator))
            radius = float(size * (0.08 + 0.14 * torch.rand((), generator=generator)))
            cy, cx = (float(radius + (size - 2 * radius) * torch.rand((), generator=generator)) for _ in range(2))
            if label == 1:
                inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
            else:
                inside = ((ys - cy).abs() <= radius) & ((xs - cx).abs() <= radius)
            images[b][:, inside] = torch.rand(3, 1, generator=generator)
            masks[b][inside] = label
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (images - mean) / std, masks


class DenseHead(nn.Module):
    """Per-pixel logits from the backbone's maps: each map to stride 4, concatenated, a 1x1
    conv-BN-ReLU mixes them, a 1x1 conv classifies, bilinear upsampling to the input size.

    Shapes: list of (B, C_i, H/4/2**i, W/4/2**i) -> (B, num_classes, H, W).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.Conv2d(sum(in_channels), width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, maps: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        stride4 = maps[0].shape[-2:]
        x = torch.cat([maps[0]] + [F.interpolate(m, size=stride4, mode="bilinear", align_corners=False)
                                   for m in maps[1:]], dim=1)
        return F.interpolate(self.classifier(self.mix(x)), size=size, mode="bilinear", align_corners=False)


class Segmenter(nn.Module):
    """HRFormer backbone (``features_only``) + :class:`DenseHead`. (B, 3, H, W) -> (B, classes, H, W)."""

    def __init__(self, arch: str, num_classes: int, pretrained: Union[bool, str] = False) -> None:
        super().__init__()
        self.backbone = hrformer.create_model(arch, features_only=True, pretrained=pretrained)
        self.head = DenseHead(self.backbone.feature_info.channels(), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x), (x.shape[-2], x.shape[-1]))


def native_bf16(device: torch.device, cpuinfo: Optional[str] = None) -> bool:
    """True where bf16 matmuls and convolutions run in hardware: a CUDA GPU that supports bf16, or a
    CPU with AMX or AVX512-BF16 (``cpuinfo``: the text of /proc/cpuinfo, read when not given)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def optimizer_for(model: Segmenter, lr: float, weight_decay: float, layer_decay: float) -> torch.optim.AdamW:
    """AdamW: the head at ``lr``; the backbone's layers (its ``group_matcher``) decaying below it."""
    groups = param_groups_layer_decay(model.backbone, lr=lr * layer_decay, weight_decay=weight_decay,
                                      layer_decay=layer_decay)
    head_decay = [p for p in model.head.parameters() if p.ndim > 1]
    head_no_decay = [p for p in model.head.parameters() if p.ndim <= 1]
    groups += [{"name": "head_decay", "params": head_decay, "lr": lr, "weight_decay": weight_decay},
               {"name": "head_no_decay", "params": head_no_decay, "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def train(args: argparse.Namespace) -> List[float]:
    """Trains for ``args.steps`` steps on fresh synthetic batches; returns the loss of every step."""
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)
    model = Segmenter(args.model, NUM_CLASSES, args.pretrained).to(device).train()
    if not args.no_grad_checkpointing:
        model.backbone.set_grad_checkpointing(True)
    optimizer = optimizer_for(model, args.lr, args.weight_decay, args.layer_decay)
    bf16 = native_bf16(device) if args.bf16 == "auto" else args.bf16 == "on"
    warmup = max(1, args.steps // 10)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    losses: List[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        # Linear warm-up, then cosine decay; every group keeps its layer's share of the rate.
        factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / args.steps))
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        images, masks = synthetic_batch(args.batch_size, args.image_size, generator)
        images, masks = images.to(device), masks.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if args.log_every and (step + 1) % args.log_every == 0:
            print(f"step {step + 1}/{args.steps}  loss {losses[-1]:.4f}  {time.perf_counter() - start:.1f} s")
    return losses


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (64x64 images, 16 steps): shows the loss falls")
    ap.add_argument("--model", default="hrformer_t", help="architecture or arch.tag (hrformer.list_models())")
    ap.add_argument("--pretrained", nargs="?", const=True, default=False,
                    help="backbone weights: alone, the --model tag's (Hub); or a checkpoint file")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3, help="the head's learning rate")
    ap.add_argument("--layer-decay", type=float, default=0.8, help="lr factor per backbone layer going down")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="bf16 autocast; auto: only where the hardware has native bf16")
    ap.add_argument("--no-grad-checkpointing", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=0, help="print the loss every N steps (0: never)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.image_size, args.batch_size = 16, 64, 8
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    return args


def main(argv: Optional[Sequence[str]] = None) -> List[float]:
    args = parse_args(argv)
    losses = train(args)
    k = max(1, min(3, len(losses) // 4))  # mean of the first and the last few steps: one batch is noisy
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    print(f"loss {first:.4f} -> {last:.4f}")
    return losses


if __name__ == "__main__":
    main()

"""``hrformer segment IMAGE --model TAG --out out.png``: semantic segmentation of one image.

Writes the colour label map blended over the image (``--out``, needs Pillow, which also reads the
image) and optionally the raw label map (``--labels``, a PNG of class indices). Without
``--multi-scale`` one forward pass at the image's size; with it the official multi-scale + flip
test (the weights' ``test_scales``, default 0.75 1 1.25).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .datasets import palette_for
from .draw import read_image
from .factory import create_model, from_original, from_pretrained
from .segmentation import overlay, predict
from .weights import detect_layout, read_checkpoint, unwrap_state_dict

_SAVED_PREFIXES = ("hf-hub:", "local-dir:")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``segment`` command on ``subparsers`` (its ``func`` is :func:`run`)."""
    p = subparsers.add_parser("segment", help="semantic segmentation of an image (needs Pillow)")
    p.add_argument("image", help="an image file Pillow reads (converted to RGB)")
    p.add_argument("--model", required=True,
                   help="arch.tag with segmentation weights (e.g. hrformer_s.cityscapes_ocr), hf-hub:/local-dir: "
                        "name, or a bare arch (hrformer_t) together with --weights")
    p.add_argument("--weights", help="a local checkpoint (.safetensors, .pth, or a save_pretrained directory)")
    p.add_argument("--out", required=True, help="the picture with the colour label map blended over it (.png)")
    p.add_argument("--labels", help="also write the label map (class indices, 8-bit PNG; 16-bit above 255 classes)")
    p.add_argument("--multi-scale", action="store_true", help="official multi-scale + flip test (slower)")
    p.add_argument("--scales", nargs="+", type=float, help="input scales (implies the flip test with --flip)")
    p.add_argument("--flip", action="store_true", help="add the horizontal flip test")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the colour map (0-1)")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, ...)")
    p.set_defaults(func=run)
    return p


def _load_model(name: str, weights: Optional[str]) -> torch.nn.Module:
    """A segmentation model with real weights: never silently a randomly initialised one."""
    if name.startswith(_SAVED_PREFIXES) or "." in name:
        model = create_model(name, pretrained=weights or True)
    elif weights:
        path = Path(weights)
        if ((path if path.is_dir() else path.parent) / "config.json").exists():
            model = from_pretrained(path)  # written by save_pretrained: its own head and classes
        elif path.is_file() and detect_layout(unwrap_state_dict(read_checkpoint(path))) != "hrformer":
            model = from_original(path, arch=name)  # an original checkpoint: classes from its tensors
        else:
            model = create_model(name, pretrained=weights, head="ocr")
    else:
        raise SystemExit(f"--model {name}: a bare architecture has no segmentation weights; name a tag "
                         "(hrformer list --pretrained '*_ocr') or give --weights FILE")
    if model.head is None or model.head.pipeline_tag != "image-segmentation":
        raise SystemExit(f"--model {name}: not a segmentation model (head {model.head_type!r}); choose an *_ocr tag")
    return model


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise SystemExit("hrformer segment reads and writes images with Pillow: pip install pillow") from None
    return Image


def _save_rgb(image: torch.Tensor, path: str) -> None:
    Image = _pil()
    h, w = image.shape[-2:]
    Image.frombytes("RGB", (w, h), bytes(image.permute(1, 2, 0).contiguous().flatten().tolist())).save(path)


def _save_labels(labels: torch.Tensor, path: str) -> None:
    Image = _pil()
    h, w = labels.shape
    if int(labels.max()) <= 255:
        Image.frombytes("L", (w, h), bytes(labels.to(torch.uint8).flatten().tolist())).save(path)
    else:
        img = Image.new("I;16", (w, h))
        img.putdata(labels.flatten().tolist())
        img.save(path)


def run(args: argparse.Namespace) -> int:
    """Run the ``segment`` command; returns the exit status."""
    model = _load_model(args.model, args.weights).to(args.device)
    cfg: Any = getattr(model, "pretrained_cfg", None) or {}
    image = read_image(args.image)
    scales: Sequence[float] = args.scales or ((cfg.get("test_scales") or (0.75, 1.0, 1.25))
                                              if args.multi_scale else (1.0,))
    _, labels = predict(model, image.to(args.device), scales=scales, flip=args.flip or args.multi_scale)
    labels = labels.cpu()
    palette = palette_for(model.num_classes, cfg.get("dataset") or "")
    _save_rgb(overlay(image, labels, palette, alpha=args.alpha), args.out)
    print(f"wrote {args.out}")
    if args.labels:
        _save_labels(labels, args.labels)
        print(f"wrote {args.labels}")
    names = cfg.get("class_names")
    counts = torch.bincount(labels.flatten(), minlength=model.num_classes)
    top = counts.argsort(descending=True)[:5]
    shown = [f"{names[i] if names and i < len(names) else i} {100.0 * counts[i] / labels.numel():.1f}%"
             for i in top.tolist() if counts[i] > 0]
    print("classes: " + ", ".join(shown))
    return 0


__all__ = ["add_parser", "run"]

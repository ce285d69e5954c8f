"""``hrformer segment IMAGE --model TAG --out out.png``: semantic segmentation of one image.

Writes the colour label map blended over the image (``--out``, Pillow), the raw label map
(``--labels``, a PNG of class indices) and / or a JSON summary (``--json``), and prints the legend:
each class present with its colour and share of the pixels (names from the weights' dataset, else
``class 3``). One pass over the whole image by default; ``--multi-scale`` is the official
multi-scale + flip test; ``--crop-size`` / ``--stride`` slide windows over large images.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, Dict, List, Optional, Sequence

from .errors import IMAGE_SUFFIXES, check_device, check_fraction, check_input, fail, user_errors
from .files import check_no_overwrite, check_output, model_files, read_image, save_picture, write_json
from .resolve import add_image_and_model_arguments, load_model


def _label_picture(labels: Any) -> Any:
    """(H, W) class indices -> an 8-bit gray PIL image (16-bit above 255 classes)."""
    from PIL import Image
    import torch

    h, w = labels.shape
    if int(labels.max()) <= 255:
        return Image.frombytes("L", (w, h), bytes(labels.to(torch.uint8).flatten().tolist()))
    img = Image.new("I;16", (w, h))
    img.putdata(labels.flatten().tolist())
    return img


def _rgb_picture(picture: Any) -> Any:
    """(3, H, W) uint8 -> an RGB PIL image."""
    from PIL import Image

    h, w = picture.shape[-2:]
    return Image.frombytes("RGB", (w, h), bytes(picture.permute(1, 2, 0).contiguous().flatten().tolist()))


def legend(result: Any) -> List[Dict[str, Any]]:
    """The classes present, largest first: index, name (``class i`` without names), RGB colour and
    the fraction of the pixels."""
    counts = result.labels.flatten().bincount(minlength=result.num_classes).tolist()
    total = max(result.labels.numel(), 1)
    names = result.class_names
    palette = result.palette
    rows = [{"index": i, "name": names[i] if names and i < len(names) else f"class {i}",
             "color": list(palette[i % len(palette)]), "fraction": c / total}
            for i, c in enumerate(counts) if c]
    return sorted(rows, key=lambda r: -r["fraction"])


def _legend_text(rows: Sequence[Dict[str, Any]]) -> str:
    width = max(len(r["name"]) for r in rows)
    lines = [f"  {r['name'].ljust(width)}  #{''.join(f'{c:02x}' for c in r['color'])}  {100 * r['fraction']:5.1f}%"
             for r in rows]
    return "legend (classes present, largest first):\n" + "\n".join(lines)


def _check_pair(values: Optional[Sequence[int]], flag: str) -> None:
    if values is not None and min(values) < 1:
        fail(f"{flag} {' '.join(map(str, values))}: sizes must be positive")


def run(args: argparse.Namespace) -> int:
    """Run the ``segment`` command; returns the exit status."""
    check_input(args.image, "IMAGE")
    device = check_device(args.device)
    check_fraction(args.alpha, "--alpha")
    for flag, path, suffixes in (("--out", args.out, IMAGE_SUFFIXES), ("--labels", args.labels, (".png",)),
                                 ("--json", args.json, (".json",))):
        if path:
            check_output(path, flag, suffixes)
    check_no_overwrite(
        [("IMAGE", args.image), *model_files("--model", args.model), *model_files("--weights", args.weights)],
        [("--out", args.out), ("--labels", args.labels), ("--json", args.json)],
    )
    if args.scales is not None and not all(math.isfinite(s) and s > 0 for s in args.scales):
        fail(f"--scales {' '.join(map(str, args.scales))}: scales must be positive numbers")
    _check_pair(args.crop_size, "--crop-size")
    _check_pair(args.stride, "--stride")
    if args.stride is not None and args.crop_size is None:
        fail("--stride needs --crop-size (the window size)")
    if args.out or args.labels:
        with user_errors("--out", needed_for="writing pictures (--out / --labels)"):
            import PIL.Image  # noqa: F401  (checked before the model loads)
    image = read_image(args.image)

    model = load_model(args.model, args.weights, task="segmentation", source_flag="--model").model.to(device)
    from ..segmentation import overlay, predict

    cfg: Any = getattr(model, "pretrained_cfg", None) or {}
    if args.multi_scale:
        scales = args.scales or tuple(cfg.get("test_scales") or (0.75, 1.0, 1.25))
    else:
        scales = args.scales or (1.0,)
    with user_errors("segment"):
        result = predict(model, image, scales=scales, flip=args.flip or args.multi_scale,
                         crop_size=tuple(args.crop_size) if args.crop_size else None,
                         stride=tuple(args.stride) if args.stride else None)
    labels = result.labels.cpu()
    if args.out:
        save_picture(_rgb_picture(overlay(image, labels, result.palette, alpha=args.alpha)), args.out, "--out")
    if args.labels:
        save_picture(_label_picture(labels), args.labels, "--labels")
    rows = legend(result)
    if args.json:
        report = {"image": str(args.image), "model": args.model, "image_size": list(labels.shape),
                  "num_classes": result.num_classes, "classes": rows}
        write_json(report, args.json)
    print(_legend_text(rows))
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``segment`` command on ``sub``."""
    p = sub.add_parser("segment", help="semantic segmentation of an image (needs Pillow)")
    add_image_and_model_arguments(p, "segmentation weights (e.g. hrformer_s.cityscapes_ocr)")
    p.add_argument("--out", help="the picture with the colour label map blended over it (.png, .jpg...)")
    p.add_argument("--labels", help="the label map (class indices, 8-bit PNG; 16-bit above 255 classes)")
    p.add_argument("--json", help="image size and the classes present (name, colour, fraction) as JSON")
    p.add_argument("--multi-scale", action="store_true", help="official multi-scale + flip test (slower)")
    p.add_argument("--scales", nargs="+", type=float, help="input scales whose logits are summed")
    p.add_argument("--flip", action="store_true", help="add the horizontal flip test")
    p.add_argument("--crop-size", nargs=2, type=int, metavar=("H", "W"),
                   help="sliding windows of this size (mmseg's slide mode; for large images)")
    p.add_argument("--stride", nargs=2, type=int, metavar=("H", "W"), help="window stride (default: 2/3 of the window)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the colour map, in [0, 1]")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, cuda:1, mps)")
    p.set_defaults(func=run, memory_advice="slide windows over the image (--crop-size H W, e.g. the model's "
                                           "training crop), fewer --scales, or another --device")
    return p


__all__ = ["add_parser", "legend", "run"]

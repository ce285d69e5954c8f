"""``hrformer pose IMAGE --model TAG [--box X1 Y1 X2 Y2 | --boxes FILE.json]``: top-down keypoints.

Person boxes: ``--box`` (repeatable), or ``--boxes`` a JSON file of a detector's output: a list of
``[x1, y1, x2, y2]`` (COCO ``[x, y, w, h]`` with ``--bbox-format xywh``), each optionally with a
fifth value, the detector's score, or a list of ``{"bbox": [...], "score": s}`` (COCO results).
Without boxes the whole image is one box. Writes the picture with boxes, scores and poses
(``--out``, Pillow) and / or the keypoints as JSON (``--json``; printed when neither is given).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, List, Optional

from ..pose import BBOX_FORMATS, DECODE_METHODS
from .errors import IMAGE_SUFFIXES, check_device, check_input, check_output, fail, to_json, user_errors, write_json
from .resolve import add_image_and_model_arguments, load_model


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"{where}: {value!r} is not a finite number")
    return float(value)


def read_boxes(path: str) -> List[List[float]]:
    """The boxes of a JSON file (module docstring): N lists of 4 numbers, or all of 5 (with scores)."""
    check_input(path, "--boxes")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        fail(f"--boxes {path}: not a readable JSON file ({e})")
    if isinstance(data, dict) and "boxes" in data:
        data = data["boxes"]
    if not isinstance(data, list):
        fail(f"--boxes {path}: expected a list of boxes, got a JSON {type(data).__name__}")
    boxes: List[List[float]] = []
    for i, item in enumerate(data):
        where = f"--boxes {path}, box {i}"
        if isinstance(item, dict):
            if "bbox" not in item:
                fail(f"{where}: an object needs a 'bbox' (and optionally a 'score')")
            values = item["bbox"]
            if not isinstance(values, list) or len(values) != 4:
                fail(f"{where}: 'bbox' must be a list of 4 numbers")
            values = values + ([item["score"]] if "score" in item else [])
        else:
            values = item
        if not isinstance(values, list) or len(values) not in (4, 5):
            fail(f"{where}: expected 4 numbers (a box) or 5 (a box and its score), got {item!r}")
        boxes.append([_number(v, where) for v in values])
    if len({len(b) for b in boxes}) > 1:
        fail(f"--boxes {path}: give a score with every box or with none")
    return boxes


def run(args: argparse.Namespace) -> int:
    """Run the ``pose`` command; returns the exit status."""
    check_input(args.image, "IMAGE")
    device = check_device(args.device)
    for flag, path, suffixes in (("--out", args.out, IMAGE_SUFFIXES), ("--json", args.json, (".json",))):
        if path:
            check_output(path, flag, suffixes)
    if args.box and args.boxes:
        fail("give the boxes with --box or with --boxes FILE.json, not both")
    if args.input_size and min(args.input_size) < 1:
        fail(f"--input-size {args.input_size[0]} {args.input_size[1]}: sizes must be positive")
    if not math.isfinite(args.score_threshold):
        fail(f"--score-threshold {args.score_threshold}: must be a finite number")
    boxes: Optional[List[List[float]]] = read_boxes(args.boxes) if args.boxes else args.box
    if args.out:
        with user_errors("--out", needed_for="drawing the picture (--out)"):
            import PIL.Image  # noqa: F401  (checked before the model loads)

    model = load_model(args.model, args.weights, task="pose", source_flag="--model").model.to(device)
    from ..draw import draw_pose
    from ..image import load_image
    from ..pose import predict

    with user_errors(f"IMAGE {args.image}", needed_for="reading the image"):
        image = load_image(args.image)
    box_tensor = None
    if boxes is not None:
        import torch

        box_tensor = torch.tensor(boxes, dtype=torch.float64).reshape(-1, len(boxes[0]) if boxes else 4)
    with user_errors("pose"):
        result = predict(model, image, box_tensor, bbox_format=args.bbox_format, flip=not args.no_flip,
                         input_size=tuple(args.input_size) if args.input_size else None, method=args.method)
    report = {"image": str(args.image), "model": args.model, **result.to_dict()}
    if args.out:
        with user_errors(f"--out {args.out}"):
            draw_pose(image, result, score_threshold=args.score_threshold).save(args.out)
        print(f"wrote {args.out}")
    if args.json:
        write_json(report, args.json)
    elif not args.out:
        sys.stdout.write(to_json(report) + "\n")
    return 0


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``pose`` command on ``sub``."""
    p = sub.add_parser("pose", help="top-down keypoints of the persons in an image (needs Pillow)")
    add_image_and_model_arguments(p, "pose weights (e.g. hrformer_s.coco_256x192)")
    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X1", "Y1", "X2", "Y2"),
                   help="a person box in image pixels; repeat for several (default: the whole image)")
    p.add_argument("--boxes", metavar="FILE.json",
                   help="person boxes from a detector: [[x1, y1, x2, y2(, score)], ...] or [{'bbox': [...], "
                        "'score': s}, ...]")
    p.add_argument("--bbox-format", choices=BBOX_FORMATS, default="xyxy",
                   help="xyxy: x1 y1 x2 y2; xywh: COCO x y width height (for --box and --boxes)")
    p.add_argument("--out", help="the picture with boxes, box scores and poses drawn (.png, .jpg...)")
    p.add_argument("--json", help="boxes, keypoints, scores and keypoint names as JSON (NaN written as null)")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about half the time)")
    p.add_argument("--method", choices=DECODE_METHODS, help="heatmap decoding (default: the weights' or msra)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="network input size (default: the weights' or 256 192)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="keypoints drawn above this score")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, cuda:1, mps)")
    p.set_defaults(func=run)
    return p


__all__ = ["add_parser", "read_boxes", "run"]

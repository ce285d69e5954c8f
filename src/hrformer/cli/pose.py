"""``hrformer pose IMAGE --model TAG [--box X1 Y1 X2 Y2 | --boxes FILE.json]``: top-down keypoints.

Person boxes: ``--box`` (repeatable), or ``--boxes`` a JSON file of a detector's output:

* COCO results, a list of ``{"bbox": [x, y, w, h], "score": s, "image_id": i, "category_id": c}``
  (score, image and category optional): read as COCO's ``xywh`` with their scores. Detections of
  several images are narrowed to this image's (``image_id`` = the number in a COCO file name such
  as ``000000397133.jpg``), of several categories to persons (``category_id`` 1);
* a list of ``[x1, y1, x2, y2]`` (COCO ``[x, y, w, h]`` with ``--bbox-format xywh``), each
  optionally with a fifth value, the detector's score (also as ``{"boxes": [...]}``).

Without boxes the whole image is one box. Writes the picture with boxes, scores and poses
(``--out``, Pillow) and / or the keypoints as JSON (``--json``; printed when neither is given).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..jsonfile import read_json
from ..pose import BBOX_FORMATS, DECODE_METHODS
from .errors import IMAGE_SUFFIXES, check_device, check_input, fail, user_errors
from .files import check_no_overwrite, check_output, model_files, read_image, save_picture, to_json, write_json
from .resolve import add_image_and_model_arguments, load_model

COCO_PERSON = 1  # COCO's category_id of a person, the only category top-down pose models take
COCO_FORMAT = "xywh"  # COCO results boxes: [x, y, width, height]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        fail(f"{where}: {value!r} is not a finite number")
    return float(value)


def _coco_detections(items: List[Dict[str, Any]], path: str, image: Optional[str]) -> List[Dict[str, Any]]:
    """COCO results narrowed to one image (several ``image_id``s: the image's COCO id, from its file
    name) and to persons (several ``category_id``s)."""
    image_ids = {item["image_id"] for item in items if "image_id" in item}
    if len(image_ids) > 1:
        stem = Path(image).stem if image else ""
        image_id = int(stem) if stem.isdigit() else None
        if image_id not in image_ids:
            fail(f"--boxes {path}: detections of {len(image_ids)} images (image_id); name the image by its COCO id "
                 f"(e.g. 000000397133.jpg for image_id 397133) or keep one image's detections")
        items = [item for item in items if item.get("image_id") == image_id]
    categories = {item["category_id"] for item in items if "category_id" in item}
    if len(categories) > 1:
        persons = [item for item in items if item.get("category_id") == COCO_PERSON]
        if not persons:
            fail(f"--boxes {path}: detections of categories {sorted(categories, key=str)}, none a person "
                 f"(COCO category_id {COCO_PERSON})")
        print(f"--boxes: {len(persons)} person detections (category_id {COCO_PERSON}) of {len(items)}",
              file=sys.stderr)
        items = persons
    return items


def read_boxes(path: str, bbox_format: Optional[str] = None,
               image: Optional[str] = None) -> Tuple[List[List[float]], str]:
    """The boxes of a JSON file (module docstring) and their format: N lists of 4 numbers, or all
    of 5 (with scores). ``bbox_format`` is the one given on the command line (None: not given);
    ``image`` the image's path (to pick its detections from a COCO results file)."""
    check_input(path, "--boxes")
    with user_errors("--boxes"):
        data = read_json(path, "list of boxes")
    if isinstance(data, dict) and "boxes" in data:
        data = data["boxes"]
    if not isinstance(data, list):
        fail(f"--boxes {path}: expected a list of boxes, got a JSON {type(data).__name__}")
    objects = [isinstance(item, dict) for item in data]
    coco = any(objects)
    if coco and not all(objects):
        fail(f"--boxes {path}: mixes objects ({{'bbox': ...}}) and lists; give one kind")
    if coco:
        if bbox_format not in (None, COCO_FORMAT):
            fail(f"--boxes {path}: COCO results objects ({{'bbox': [x, y, w, h], 'score': s}}) hold {COCO_FORMAT} "
                 f"boxes, not {bbox_format}; drop --bbox-format {bbox_format}")
        for i, item in enumerate(data):
            if "bbox" not in item:
                fail(f"--boxes {path}, box {i}: an object needs a 'bbox' (and optionally a 'score')")
        data = _coco_detections(data, path, image)
    boxes: List[List[float]] = []
    for i, item in enumerate(data):
        where = f"--boxes {path}, box {i}"
        if isinstance(item, dict):
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
    return boxes, COCO_FORMAT if coco else bbox_format or "xyxy"


def run(args: argparse.Namespace) -> int:
    """Run the ``pose`` command; returns the exit status."""
    check_input(args.image, "IMAGE")
    device = check_device(args.device)
    for flag, path, suffixes in (("--out", args.out, IMAGE_SUFFIXES), ("--json", args.json, (".json",))):
        if path:
            check_output(path, flag, suffixes)
    check_no_overwrite(
        [("IMAGE", args.image), ("--boxes", args.boxes), *model_files("--model", args.model),
         *model_files("--weights", args.weights)],
        [("--out", args.out), ("--json", args.json)],
    )
    if args.box and args.boxes:
        fail("give the boxes with --box or with --boxes FILE.json, not both")
    if args.input_size and min(args.input_size) < 1:
        fail(f"--input-size {args.input_size[0]} {args.input_size[1]}: sizes must be positive")
    if args.batch_size < 1:
        fail(f"--batch-size {args.batch_size}: must be positive")
    if not math.isfinite(args.score_threshold):
        fail(f"--score-threshold {args.score_threshold}: must be a finite number")
    bbox_format = args.bbox_format or "xyxy"
    boxes: Optional[List[List[float]]] = args.box
    if args.boxes:
        boxes, bbox_format = read_boxes(args.boxes, args.bbox_format, args.image)
    if args.out:
        with user_errors("--out", needed_for="drawing the picture (--out)"):
            import PIL.Image  # noqa: F401  (checked before the model loads)
    image = read_image(args.image)

    model = load_model(args.model, args.weights, task="pose", source_flag="--model").model.to(device)
    from ..draw import draw_pose
    from ..pose import predict

    box_tensor = None
    if boxes is not None:
        import torch

        box_tensor = torch.tensor(boxes, dtype=torch.float64).reshape(-1, len(boxes[0]) if boxes else 4)
    with user_errors("pose"):
        result = predict(model, image, box_tensor, bbox_format=bbox_format, flip=not args.no_flip,
                         input_size=tuple(args.input_size) if args.input_size else None, method=args.method,
                         batch_size=args.batch_size)
    report = {"image": str(args.image), "model": args.model, **result.to_dict()}
    if args.out:
        save_picture(draw_pose(image, result, score_threshold=args.score_threshold), args.out, "--out")
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
                   help="person boxes from a detector: COCO results [{'bbox': [x, y, w, h], 'score': s, "
                        "'image_id': i}, ...] (xywh, as COCO), or [[x1, y1, x2, y2(, score)], ...]")
    p.add_argument("--bbox-format", choices=BBOX_FORMATS,
                   help="xyxy (default): x1 y1 x2 y2; xywh: COCO x y width height (for --box and lists of "
                        "numbers in --boxes; COCO results objects are xywh)")
    p.add_argument("--out", help="the picture with boxes, box scores and poses drawn (.png, .jpg...)")
    p.add_argument("--json", help="boxes, keypoints, scores and keypoint names as JSON (NaN written as null)")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about half the time)")
    p.add_argument("--method", choices=DECODE_METHODS, help="heatmap decoding (default: the weights' or msra)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="network input size (default: the weights' or 256 192)")
    p.add_argument("--batch-size", type=int, default=32, help="person crops per forward pass (less memory: smaller)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="keypoints drawn above this score")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, cuda:1, mps)")
    p.set_defaults(func=run, memory_advice="use a smaller --batch-size (person crops per pass) or --input-size, "
                                           "or another --device")
    return p


__all__ = ["add_parser", "read_boxes", "run"]

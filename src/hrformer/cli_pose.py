"""``hrformer pose IMAGE --box x1 y1 x2 y2 --model TAG``: top-down pose of the given person boxes.

Writes the picture (``--out``, needs Pillow) and/or the keypoints as JSON (``--json``; printed when
neither is given). Pillow also reads the image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

from .draw import draw_pose, read_image
from .factory import create_model
from .keypoints import COCO_KEYPOINTS
from .pose import DECODE_METHODS, keypoint_info, predict

_SAVED_PREFIXES = ("hf-hub:", "local-dir:")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register the ``pose`` command on ``subparsers`` (its ``func`` is :func:`run`)."""
    p = subparsers.add_parser("pose", help="top-down keypoints of person boxes in an image (needs Pillow)")
    p.add_argument("image", help="an image file Pillow reads (converted to RGB)")
    p.add_argument("--box", nargs=4, type=float, action="append", required=True, metavar=("X1", "Y1", "X2", "Y2"),
                   help="a person box in image pixels; repeat for several")
    p.add_argument("--model", required=True,
                   help="arch.tag with pose weights (e.g. hrformer_s.coco_256x192), hf-hub:/local-dir: name, "
                        "or a bare arch (hrformer_t) together with --weights")
    p.add_argument("--weights", help="a local checkpoint (.safetensors or .pth) instead of the tag's weights")
    p.add_argument("--out", help="the picture with the poses drawn (.png)")
    p.add_argument("--json", help="keypoints, scores and keypoint names as JSON")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about half the time)")
    p.add_argument("--method", choices=DECODE_METHODS, help="heatmap decoding (default: the weights' or msra)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="network input size (default: the weights' or 256 192)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="keypoints drawn above this score")
    p.add_argument("--device", default="cpu", help="torch device for the network (cpu, cuda, ...)")
    p.set_defaults(func=run)
    return p


def _load_model(name: str, weights: Any) -> torch.nn.Module:
    """A pose model with real weights: never silently a randomly initialised one."""
    if name.startswith(_SAVED_PREFIXES) or "." in name:
        # A tag (or a saved model) says which model the weights need; without --weights load its own.
        model = create_model(name, pretrained=weights or True)
    elif weights:
        model = create_model(name, pretrained=weights, head="pose")
    else:
        raise SystemExit(f"--model {name}: a bare architecture has no pose weights; name a tag with pose weights "
                         "(hrformer list --pretrained 'hrformer_*coco*') or give --weights FILE")
    if getattr(model, "head_type", "pose") != "pose":
        raise SystemExit(f"--model {name}: not a pose model (head {model.head_type!r}); choose a coco_* tag")
    return model


def run(args: argparse.Namespace) -> int:
    """Run the ``pose`` command; returns the exit status."""
    model = _load_model(args.model, args.weights).to(args.device)
    image = read_image(args.image)
    boxes = torch.tensor(args.box, dtype=torch.float64)
    keypoints, scores = predict(
        model, image, boxes, input_size=tuple(args.input_size) if args.input_size else None,
        flip_test=not args.no_flip, method=args.method,
    )
    info = keypoint_info(model)
    if info is None and keypoints.shape[1] == COCO_KEYPOINTS.num_keypoints:
        info = COCO_KEYPOINTS
    names = list(info.names) if info is not None else [str(k) for k in range(keypoints.shape[1])]
    result: Dict[str, Any] = {
        "image": str(args.image),
        "model": args.model,
        "keypoint_names": names,
        "instances": [
            {"box": box, "keypoints": kps, "scores": sc}
            for box, kps, sc in zip(boxes.tolist(), keypoints.tolist(), scores.tolist())
        ],
    }
    if args.out:
        skeleton: List = list(info.skeleton) if info is not None else []
        draw_pose(image, keypoints, scores, skeleton, score_threshold=args.score_threshold).save(args.out)
        print(f"wrote {args.out}")
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
        print(f"wrote {args.json}")
    elif not args.out:
        sys.stdout.write(text + "\n")
    return 0


__all__ = ["add_parser", "run"]

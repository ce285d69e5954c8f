"""Draw predicted poses on an image (needs Pillow: ``pip install 'hrformer[draw]'``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .errors import InputError
from .image import PILLOW_HINT, load_image, to_pil

if TYPE_CHECKING:  # Pillow is optional: imported inside draw_pose
    from PIL import Image as PILImage

# Limb and joint colours, cycled (RGB).
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 255, 0), (255, 128, 0), (51, 153, 255), (255, 51, 153), (255, 255, 0), (0, 255, 255), (170, 0, 255),
)
BOX_COLOR = (255, 255, 255)


def read_image(path: Any) -> Tensor:
    """An image file as a (3, H, W) uint8 RGB tensor (:func:`hrformer.image.load_image`, re-quantised)."""
    return (load_image(path) * 255).round().to(torch.uint8)


def draw_pose(
    image: Any,
    keypoints: Any,
    scores: Optional[Tensor] = None,
    skeleton: Sequence[Tuple[int, int]] = (),
    score_threshold: float = 0.3,
    *,
    boxes: Optional[Tensor] = None,
    box_scores: Optional[Tensor] = None,
    channel_order: str = "RGB",
) -> "PILImage.Image":
    """A copy of ``image`` with the poses drawn: limbs (``skeleton`` index pairs) whose two ends score
    above ``score_threshold``, those keypoints as dots, and the ``boxes`` (N, 4) xyxy with their
    ``box_scores`` (N,) when given.

    ``image``: any form of :mod:`hrformer.image` (path, PIL, numpy HWC, (3, H, W) tensor; uint8 or
    float in [0, 1]); ``keypoints``: (N, K, 2) or (K, 2) (x, y) image pixels, or a
    :class:`hrformer.pose.PoseResult` (its scores, skeleton, boxes and box scores are then used);
    ``scores``: (N, K) or (K,). Returns an RGB ``PIL.Image``.
    """
    try:
        from PIL import ImageDraw
    except ImportError:  # Pillow is an optional extra, never a runtime dependency
        raise ImportError(f"draw_pose needs Pillow: {PILLOW_HINT}") from None
    if hasattr(keypoints, "keypoints") and hasattr(keypoints, "scores"):  # a PoseResult
        result = keypoints
        keypoints, scores = result.keypoints, result.scores
        skeleton = skeleton or result.skeleton
        boxes = result.boxes if boxes is None else boxes
        box_scores = result.box_scores if box_scores is None else box_scores
    if scores is None:
        raise InputError("draw_pose needs the keypoint scores (or a PoseResult)")
    canvas = to_pil(image, channel_order=channel_order)
    keypoints = torch.as_tensor(keypoints).detach().cpu().double()
    keypoints = keypoints.reshape(-1, *keypoints.shape[-2:])
    scores = torch.as_tensor(scores).detach().cpu().double().reshape(keypoints.shape[:2])
    draw = ImageDraw.Draw(canvas)
    # Line width and dot radius follow the image size so thumbnails and photos both read well.
    width = max(1, round(min(canvas.size) / 150))
    radius = max(1, round(min(canvas.size) / 100))
    if boxes is not None:
        box_list = torch.as_tensor(boxes).detach().cpu().double().reshape(-1, 4).tolist()
        score_list = torch.as_tensor(box_scores).detach().cpu().reshape(-1).tolist() if box_scores is not None else None
        for i, box in enumerate(box_list):
            draw.rectangle(box, outline=BOX_COLOR, width=width)
            if score_list is not None:
                draw.text((box[0] + 2, box[1] + 1), f"{score_list[i]:.2f}", fill=BOX_COLOR)
    for pose, pose_scores in zip(keypoints.tolist(), scores.tolist()):
        visible = [s > score_threshold for s in pose_scores]  # NaN scores: not visible
        for i, (a, b) in enumerate(skeleton):
            if visible[a] and visible[b]:
                draw.line([tuple(pose[a]), tuple(pose[b])], fill=PALETTE[i % len(PALETTE)], width=width)
        for k, (x, y) in enumerate(pose):
            if visible[k]:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 0, 0),
                             outline=(255, 255, 255))
    return canvas


__all__ = ["BOX_COLOR", "PALETTE", "draw_pose", "read_image"]

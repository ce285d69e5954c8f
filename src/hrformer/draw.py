"""Draw predicted poses on an image (needs Pillow: ``pip install pillow``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, Tuple

import torch
from torch import Tensor

if TYPE_CHECKING:  # Pillow is optional: imported inside draw_pose
    from PIL import Image as PILImage

# Limb and joint colours, cycled (RGB).
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 255, 0), (255, 128, 0), (51, 153, 255), (255, 51, 153), (255, 255, 0), (0, 255, 255), (170, 0, 255),
)


def read_image(path: str) -> Tensor:
    """An image file as a (3, H, W) uint8 RGB tensor (Pillow; no numpy)."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is an optional extra, never a runtime dependency
        raise SystemExit("reading images needs Pillow: pip install pillow") from None
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(h, w, 3).permute(2, 0, 1)


def _to_pil(image: Any) -> "PILImage.Image":
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image must be a (3, H, W) or (1, H, W) tensor; got shape {tuple(image.shape)}")
        pixels = image.detach().cpu()
        if pixels.is_floating_point():
            pixels = pixels.round().clamp(0, 255)
        # A fresh (H, W, 3) tensor owns exactly its bytes: hand them to Pillow without numpy.
        pixels = pixels.to(torch.uint8).expand(3, -1, -1).permute(1, 2, 0).clone(memory_format=torch.contiguous_format)
        h, w = pixels.shape[:2]
        return Image.frombytes("RGB", (w, h), bytes(pixels.untyped_storage()))
    raise TypeError(f"image must be a PIL image or a (3, H, W) tensor, not {type(image).__name__}")


def draw_pose(
    image: Any,
    keypoints: Tensor,
    scores: Tensor,
    skeleton: Sequence[Tuple[int, int]] = (),
    score_threshold: float = 0.3,
) -> "PILImage.Image":
    """A copy of ``image`` with the poses drawn: limbs (``skeleton`` index pairs) whose two ends score
    above ``score_threshold``, and those keypoints as dots.

    ``image``: a PIL image or a (3, H, W) RGB tensor with values in [0, 255]; ``keypoints``: (N, K, 2)
    or (K, 2) as (x, y) image pixels; ``scores``: (N, K) or (K,). Returns an RGB ``PIL.Image``.
    """
    try:
        from PIL import ImageDraw
    except ImportError:  # Pillow is an optional extra, never a runtime dependency
        raise ImportError("draw_pose needs Pillow: pip install pillow") from None
    canvas = _to_pil(image).copy()
    keypoints = torch.as_tensor(keypoints, dtype=torch.float64).reshape(-1, *torch.as_tensor(keypoints).shape[-2:])
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(keypoints.shape[:2])
    draw = ImageDraw.Draw(canvas)
    # Line width and dot radius follow the image size so thumbnails and photos both read well.
    width = max(1, round(min(canvas.size) / 150))
    radius = max(1, round(min(canvas.size) / 100))
    for pose, pose_scores in zip(keypoints.tolist(), scores.tolist()):
        visible = [s > score_threshold for s in pose_scores]
        for i, (a, b) in enumerate(skeleton):
            if visible[a] and visible[b]:
                draw.line([tuple(pose[a]), tuple(pose[b])], fill=PALETTE[i % len(PALETTE)], width=width)
        for k, (x, y) in enumerate(pose):
            if visible[k]:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 0, 0),
                             outline=(255, 255, 255))
    return canvas


__all__ = ["PALETTE", "draw_pose"]

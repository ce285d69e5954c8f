"""Boxes and affine crops of the top-down pipeline (mmpose 1.x restated in torch).

* :func:`parse_boxes`: detector boxes (N, 4) / (N, 5) in ``xyxy`` or COCO ``xywh`` -> checked xyxy
  boxes and scores, degenerate boxes refused by index;
* :func:`box_to_center_scale`: ``GetBBoxCenterScale`` (padding 1.25) + ``TopdownAffine``'s aspect-ratio fix;
* :func:`warp_matrix`, :func:`crop`: ``get_warp_matrix`` / ``get_udp_warp_matrix`` and
  ``cv2.warpAffine(..., flags=INTER_LINEAR)`` (zeros outside the image) via ``grid_sample``.

Conventions: sizes are torch's ``(H, W)``; points, centres and scales are ``(x, y)`` / ``(w, h)`` in
pixel-index coordinates (pixel ``i`` is centred on ``i``), as in OpenCV and mmpose.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, InputTypeError

BBOX_FORMATS = ("xyxy", "xywh")

RotLike = Union[float, Tensor]
SizeLike = Tuple[int, int]


def parse_boxes(boxes: Any, image_size: SizeLike, bbox_format: str = "xyxy") -> Tuple[Tensor, Optional[Tensor]]:
    """Person boxes of one image -> float64 (N, 4) ``x1, y1, x2, y2`` and their detector scores (N,) or None.

    ``boxes``: a tensor, numpy array or nested list, (N, 4) or (N, 5) (the fifth column: detector
    scores), or one box (4,) / (5,); ``bbox_format``: ``"xyxy"`` or ``"xywh"`` (COCO ``x, y, w, h``,
    converted as mmpose's ``bbox_xywh2xyxy``: ``x2 = x + w``). ``image_size``: (H, W).
    Degenerate boxes are refused, listing their indices: non-finite coordinates, zero or negative
    width / height, or wholly outside the image.
    """
    if bbox_format not in BBOX_FORMATS:
        raise InputError(f"bbox_format must be 'xyxy' (x1, y1, x2, y2) or 'xywh' (COCO x, y, w, h), got {bbox_format!r}")
    if isinstance(boxes, Tensor):
        boxes = boxes.detach().cpu()
    try:
        table = torch.as_tensor(boxes, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputTypeError(f"boxes must be a tensor, numpy array or list of (N, 4) / (N, 5) numbers ({err})") from err
    if table.numel() == 0:
        table = table.reshape(0, 4)
    if table.dim() == 1:
        table = table.unsqueeze(0)
    if table.dim() != 2 or table.shape[1] not in (4, 5):
        raise InputError(f"boxes must be (N, 4) x1, y1, x2, y2 or (N, 5) with detector scores; got shape "
                         f"{tuple(table.shape)}")
    xyxy = table[:, :4].clone()
    scores = table[:, 4].float() if table.shape[1] == 5 else None
    if bbox_format == "xywh":
        xyxy[:, 2:] += xyxy[:, :2]
    h, w = image_size
    finite = torch.isfinite(xyxy).all(dim=1)
    empty = finite & ((xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]))
    # The image covers pixel centres 0 .. W - 1 and 0 .. H - 1.
    outside = finite & ~empty & ((xyxy[:, 2] < 0) | (xyxy[:, 3] < 0) | (xyxy[:, 0] > w - 1) | (xyxy[:, 1] > h - 1))
    problems = []
    for mask, what in ((~finite, "NaN / Inf coordinates"), (empty, "zero or negative width / height"),
                       (outside, f"wholly outside the {w}x{h} image")):
        if bool(mask.any()):
            problems.append(f"{what}: {mask.nonzero().flatten().tolist()}")
    if problems:
        hint = "; drop them (e.g. boxes[keep])"
        if bbox_format == "xyxy" and bool(empty.any()):
            hint += ", and if these are COCO x, y, w, h boxes pass bbox_format='xywh'"
        raise InputError("degenerate boxes (by index) " + "; ".join(problems) + hint)
    return xyxy, scores


def box_to_center_scale(boxes: Tensor, aspect_ratio: float, padding: float = 1.25) -> Tuple[Tensor, Tensor]:
    """(N, 4) ``x1, y1, x2, y2`` boxes -> centres (N, 2) and scales (N, 2) ``(w, h)``.

    The box is padded by ``padding`` (mmpose ``bbox_xyxy2cs``) then its shorter side grown to
    ``aspect_ratio = input width / input height`` (``TopdownAffine._fix_aspect_ratio``).
    """
    boxes = torch.as_tensor(boxes)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if boxes.shape[-1] != 4:
        raise InputError(f"boxes must be (N, 4) x1, y1, x2, y2; got shape {tuple(boxes.shape)}")
    center = (boxes[..., 2:] + boxes[..., :2]) * 0.5
    wh = (boxes[..., 2:] - boxes[..., :2]) * padding
    w, h = wh[..., 0], wh[..., 1]
    wider = w > h * aspect_ratio
    scale = torch.stack([torch.where(wider, w, h * aspect_ratio), torch.where(wider, w / aspect_ratio, h)], dim=-1)
    return center, scale


def _rotation(rot: RotLike, n: int, device: torch.device) -> Tuple[Tensor, Tensor]:
    """cos and sin (N,) of ``rot`` degrees (a number or an (N,) tensor), in float64."""
    rad = torch.deg2rad(torch.as_tensor(rot, dtype=torch.float64, device=device)).expand(n)
    return torch.cos(rad), torch.sin(rad)


def _invert_affine(matrix: Tensor) -> Tensor:
    """(N, 2, 3) -> the (N, 2, 3) inverse affine map (closed-form 2x2 inverse)."""
    a, b, tx = matrix[:, 0].unbind(-1)
    c, d, ty = matrix[:, 1].unbind(-1)
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return torch.stack([
        torch.stack([ia, ib, -(ia * tx + ib * ty)], dim=-1),
        torch.stack([ic, id_, -(ic * tx + id_ * ty)], dim=-1),
    ], dim=1)


def _warp_matrix64(center: Tensor, scale: Tensor, output_size: SizeLike, rot: RotLike, udp: bool) -> Tensor:
    """The src -> dst (N, 2, 3) matrix in float64 (see :func:`warp_matrix`)."""
    center = center.to(torch.float64).reshape(-1, 2)
    scale = scale.to(torch.float64).reshape(-1, 2)
    out_h, out_w = output_size
    cos, sin = _rotation(rot, center.shape[0], center.device)
    cx, cy = center.unbind(-1)
    sw, sh = scale.unbind(-1)
    if udp:
        # get_udp_warp_matrix: diag(sx, sy) @ R(rot) about the centre, the box corner to pixel 0 and
        # its far corner to pixel out - 1. Its rotation has the opposite sense to get_warp_matrix's.
        sx, sy = (out_w - 1) / sw, (out_h - 1) / sh
        m00, m01, m10, m11 = cos * sx, -sin * sx, sin * sy, cos * sy
        t0 = sx * (-cx * cos + cy * sin + 0.5 * sw)
        t1 = sy * (-cx * sin - cy * cos + 0.5 * sh)
    else:
        # get_warp_matrix solves three point pairs: the centre to the output centre, the box's left
        # mid-point (rotated by rot) to the output's left mid-point, and a third point at 90 degrees
        # to both. That is a similarity: zoom out_w / scale_w (the height only follows from the
        # aspect ratio), rotation by -rot, centre to (out_w / 2, out_h / 2).
        k = out_w / sw
        m00, m01, m10, m11 = k * cos, k * sin, -k * sin, k * cos
        t0 = out_w * 0.5 - (m00 * cx + m01 * cy)
        t1 = out_h * 0.5 - (m10 * cx + m11 * cy)
    return torch.stack([torch.stack([m00, m01, t0], -1), torch.stack([m10, m11, t1], -1)], dim=1)


def warp_matrix(
    center: Tensor,
    scale: Tensor,
    output_size: SizeLike,
    rot: RotLike = 0.0,
    inv: bool = False,
    udp: bool = False,
) -> Tensor:
    """The affine matrix that warps the box (``center``, ``scale``) onto an ``output_size`` (H, W) image.

    ``center``, ``scale``: (N, 2) or (2,) as (x, y) and (w, h); ``rot``: degrees, a number or (N,).
    Returns (N, 2, 3) (or (2, 3) for (2,) inputs), mapping image pixels to output pixels, or the
    reverse with ``inv=True``: mmpose's ``get_warp_matrix(center, scale, rot, (W, H), inv=inv)``, or
    ``get_udp_warp_matrix`` with ``udp=True``. Computed in float64, returned in ``center``'s float dtype.
    """
    center, scale = torch.as_tensor(center), torch.as_tensor(scale)
    matrix = _warp_matrix64(center, scale, output_size, rot, udp)
    if inv:
        matrix = _invert_affine(matrix)
    dtype = center.dtype if center.is_floating_point() else torch.get_default_dtype()
    matrix = matrix.to(dtype)
    return matrix[0] if center.dim() == 1 else matrix


def crop(
    images: Tensor,
    center: Tensor,
    scale: Tensor,
    output_size: SizeLike,
    rot: RotLike = 0.0,
    udp: bool = False,
    image_index: Optional[Tensor] = None,
) -> Tensor:
    """Warp each box to an ``output_size`` (h, w) crop: ``cv2.warpAffine(img, M, (w, h), INTER_LINEAR)``.

    ``images``: (C, H, W), cropped by every box, or (B, C, H, W) with ``image_index`` (N,) naming
    each box's image (default: box i from image i, or all from the only image when B == 1).
    ``center``, ``scale``: (N, 2); ``M`` is :func:`warp_matrix` (``udp`` picks the UDP one).
    Returns (N, C, h, w) in the images' float dtype (float32 for integer images), bilinear, with
    zeros outside the image: output pixel (x, y) samples the image at ``M^-1 [x, y, 1]``.
    """
    center = torch.as_tensor(center, device=images.device).reshape(-1, 2)
    scale = torch.as_tensor(scale, device=images.device).reshape(-1, 2)
    n = center.shape[0]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    images = images.to(dtype)
    if images.dim() == 3:
        # One image for every box: a stride-0 batch view, no copies.
        batch = images.unsqueeze(0).expand(n, *images.shape)
    elif images.dim() == 4:
        if image_index is not None:
            batch = images[torch.as_tensor(image_index, device=images.device).long()]
        elif images.shape[0] == n:
            batch = images
        elif images.shape[0] == 1:
            batch = images.expand(n, *images.shape[1:])
        else:
            raise InputError(f"{images.shape[0]} images for {n} boxes: give image_index (N,)")
    else:
        raise InputError(f"images must be (C, H, W) or (B, C, H, W); got shape {tuple(images.shape)}")
    out_h, out_w = output_size
    src_h, src_w = images.shape[-2:]
    inverse = _invert_affine(_warp_matrix64(center, scale, output_size, rot, udp))  # output px -> image px
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64, device=images.device),
        torch.arange(out_w, dtype=torch.float64, device=images.device),
        indexing="ij",
    )
    dst = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (h, w, 3)
    src = torch.einsum("nij,hwj->nhwi", inverse, dst)  # (N, h, w, 2) image pixel-index coordinates
    # align_corners=False puts pixel i's centre at normalised (2i + 1) / size - 1, so pixel-index
    # coordinates map exactly (and a 1-pixel-wide image still works).
    size = torch.tensor([src_w, src_h], dtype=torch.float64, device=images.device)
    grid = ((2 * src + 1) / size - 1).to(dtype)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


__all__ = ["BBOX_FORMATS", "box_to_center_scale", "crop", "parse_boxes", "warp_matrix"]

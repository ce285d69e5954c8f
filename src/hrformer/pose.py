"""Top-down pose inference without mmpose: box -> crop -> network -> heatmaps -> keypoints.

A torch restatement of the mmpose 1.x top-down pipeline, batched over boxes and keypoints:

* :func:`box_to_center_scale`: ``GetBBoxCenterScale`` (padding 1.25) + ``TopdownAffine``'s aspect-ratio fix;
* :func:`warp_matrix`, :func:`crop`: ``get_warp_matrix`` / ``get_udp_warp_matrix`` and
  ``cv2.warpAffine(..., flags=INTER_LINEAR)`` (zeros outside the image) via ``grid_sample``;
* :func:`flip_heatmaps`: the flip test's heatmap flip (``flip_mode='heatmap'``);
* :func:`decode_heatmaps`: ``MSRAHeatmap.decode`` (``"msra"``, ``"dark"`` = ``unbiased=True``) and
  ``UDPHeatmap.decode`` (``"udp"``, gaussian heatmaps), their quirks included;
* :func:`predict`: the whole chain, with flip test and the map back to image coordinates of
  ``TopdownPoseEstimator.add_pred_to_datasample``.

Conventions: sizes are torch's ``(H, W)``; points, centres and scales are ``(x, y)`` / ``(w, h)`` in
pixel-index coordinates (pixel ``i`` is centred on ``i``), as in OpenCV and mmpose.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .keypoints import COCO_KEYPOINTS, KeypointInfo

DECODE_METHODS = ("msra", "dark", "udp")
DEFAULT_INPUT_SIZE = (256, 192)
# mmpose's data preprocessor for the COCO models: ImageNet statistics in [0, 1] units (x255 at use).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RotLike = Union[float, Tensor]
SizeLike = Tuple[int, int]


# --------------------------------------------------------------------------- boxes and warps
def box_to_center_scale(boxes: Tensor, aspect_ratio: float, padding: float = 1.25) -> Tuple[Tensor, Tensor]:
    """(N, 4) ``x1, y1, x2, y2`` boxes -> centres (N, 2) and scales (N, 2) ``(w, h)``.

    The box is padded by ``padding`` (mmpose ``bbox_xyxy2cs``) then its shorter side grown to
    ``aspect_ratio = input width / input height`` (``TopdownAffine._fix_aspect_ratio``).
    """
    boxes = torch.as_tensor(boxes)
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (N, 4) x1, y1, x2, y2; got shape {tuple(boxes.shape)}")
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
            raise ValueError(f"{images.shape[0]} images for {n} boxes: give image_index (N,)")
    else:
        raise ValueError(f"images must be (C, H, W) or (B, C, H, W); got shape {tuple(images.shape)}")
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


# --------------------------------------------------------------------------- heatmaps
def flip_heatmaps(heatmaps: Tensor, flip_indices: Optional[Sequence[int]], shift: bool = True) -> Tensor:
    """Heatmaps (N, K, h, w) of a horizontally flipped crop -> heatmaps of the unflipped crop.

    Flips the width, swaps left/right channels (``out[:, k] = flipped[:, flip_indices[k]]``) and,
    with ``shift``, moves the result one pixel to the right keeping column 0 (mmpose
    ``flip_heatmaps(flip_mode='heatmap', shift_heatmap=True)``: the flip maps pixel x to w - 1 - x,
    the one-pixel shift compensates the MSRA codec's corner-aligned coordinates).
    """
    flipped = heatmaps.flip(-1)
    if flip_indices is not None:
        if len(flip_indices) != heatmaps.shape[1]:
            raise ValueError(f"{len(flip_indices)} flip_indices for {heatmaps.shape[1]} heatmaps")
        flipped = flipped[:, torch.as_tensor(list(flip_indices), dtype=torch.long, device=heatmaps.device)]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
    return flipped


def opencv_gaussian_kernel(ksize: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (ksize,) kernel of ``cv2.getGaussianKernel(ksize, 0)``: OpenCV's fixed binomial kernels up
    to size 7, else a normalised Gaussian of sigma ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8``."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"the blur kernel size must be odd and positive, got {ksize}")
    small = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    if ksize in small:
        return torch.tensor(small[ksize], dtype=dtype)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (kernel / kernel.sum()).to(dtype)


def modulate_heatmaps(heatmaps: Tensor, kernel_size: int = 11) -> Tensor:
    """mmpose ``gaussian_blur`` of (N, K, h, w) maps: each map zero-padded by ``kernel_size // 2``,
    ``cv2.GaussianBlur(ksize, sigma 0)``, cropped back and rescaled to its original maximum.

    The padding is as wide as the kernel's radius, so OpenCV's reflected border never reaches the
    cropped pixels: this is a plain zero-padded separable convolution. An all-zero map gives NaN
    (0 / 0) as in mmpose.
    """
    n, k, h, w = heatmaps.shape
    radius = kernel_size // 2
    kernel = opencv_gaussian_kernel(kernel_size, heatmaps.dtype).to(heatmaps.device)
    maps = heatmaps.reshape(n * k, 1, h, w)
    blurred = F.conv2d(maps, kernel.view(1, 1, 1, -1), padding=(0, radius))
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    origin_max = maps.amax(dim=(-2, -1), keepdim=True)
    blurred = blurred * (origin_max / blurred.amax(dim=(-2, -1), keepdim=True))
    return blurred.reshape(n, k, h, w)


def heatmap_maximum(heatmaps: Tensor) -> Tuple[Tensor, Tensor]:
    """(N, K, h, w) -> argmax locations (N, K, 2) as float (x, y) and maxima (N, K).

    mmpose ``get_heatmap_maximum``: the first maximum in row-major order; a location is -1 where
    the maximum is not positive.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(dim=-1)
    values = flat.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    locations = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    locations = torch.where((values <= 0).unsqueeze(-1), torch.full_like(locations, -1.0), locations)
    return locations, values


def _pixel(maps: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """maps (N, K, h, w) at integer (x, y) (N, K), clamped into the map (callers mask what that hides)."""
    h, w = maps.shape[-2:]
    index = y.clamp(0, h - 1) * w + x.clamp(0, w - 1)
    return maps.flatten(2).gather(-1, index.unsqueeze(-1)).squeeze(-1)


def _refine_msra(locations: Tensor, heatmaps: Tensor) -> Tensor:
    """mmpose ``refine_keypoints``: a quarter pixel towards the higher neighbour, per axis.

    The conditions are mmpose's, asymmetric as they are: x moves only when 1 < x < w - 1 (so never
    from column 1) and 0 < y < h; y moves only when 1 < y < h - 1 and 0 < x < w.
    """
    h, w = heatmaps.shape[-2:]
    x, y = locations.long().unbind(-1)
    move_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    move_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = _pixel(heatmaps, x + 1, y) - _pixel(heatmaps, x - 1, y)
    dy = _pixel(heatmaps, x, y + 1) - _pixel(heatmaps, x, y - 1)
    step = torch.stack([torch.where(move_x, torch.sign(dx), 0.0), torch.where(move_y, torch.sign(dy), 0.0)], -1)
    return locations + 0.25 * step


def _refine_dark(locations: Tensor, heatmaps: Tensor, kernel_size: int) -> Tensor:
    """mmpose ``refine_keypoints_dark``: one Newton step on the log of the blurred heatmap, with
    central differences of step 1 (gradient) and 2 (Hessian), where 1 < x < w - 2, 1 < y < h - 2
    and the Hessian is invertible; other keypoints stay put."""
    h, w = heatmaps.shape[-2:]
    logs = modulate_heatmaps(heatmaps, kernel_size).clamp_min(1e-10).log()
    x, y = locations.long().unbind(-1)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)

    def at(ox: int, oy: int) -> Tensor:
        return _pixel(logs, x + ox, y + oy)

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    det = dxx * dyy - dxy * dxy
    apply = inside & (det != 0)
    det = torch.where(apply, det, torch.ones_like(det))  # no 0 / 0 in the masked-out lanes
    # offset = -Hessian^-1 @ gradient, the 2x2 inverse written out.
    offset_x = -(dyy * dx - dxy * dy) / det
    offset_y = -(dxx * dy - dxy * dx) / det
    offset = torch.stack([offset_x, offset_y], dim=-1)
    return locations + torch.where(apply.unsqueeze(-1), offset, torch.zeros_like(offset))


def _refine_dark_udp(locations: Tensor, heatmaps: Tensor, kernel_size: int) -> Tensor:
    """mmpose ``refine_keypoints_dark_udp``: a Newton step on the log of the blurred heatmap clipped
    to [1e-3, 50], edge-padded by one pixel, for every keypoint (no border condition).

    mmpose reads the neighbours from the flattened (K, h + 2, w + 2) padded maps of one instance by
    flat index; a -1 location (non-positive maximum) then reads the padding corner and, wrapping
    round like numpy's negative indices, the previous keypoint's (the last one's, for keypoint 0)
    bottom row. The same flat indexing reproduces that.
    """
    n, k, h, w = heatmaps.shape
    logs = modulate_heatmaps(heatmaps, kernel_size).clamp(1e-3, 50.0).log()
    padded = F.pad(logs, (1, 1, 1, 1), mode="replicate").reshape(n, -1)  # (N, K * (h + 2) * (w + 2))
    row = w + 2
    x, y = locations.unbind(-1)
    index = (x + 1 + (y + 1) * row).long() + row * (h + 2) * torch.arange(k, device=heatmaps.device)

    def at(offset: int) -> Tensor:
        return padded.gather(-1, (index + offset) % padded.shape[-1])

    i_ = at(0)
    ix1, ix1_ = at(1), at(-1)
    iy1, iy1_ = at(row), at(-row)
    ix1y1, ix1_y1_ = at(row + 1), at(-row - 1)
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    # mmpose inverts hessian + float32-eps * I in float64; the 2x2 inverse written out.
    eps = torch.finfo(torch.float32).eps
    a, b, d = dxx.double() + eps, dxy.double(), dyy.double() + eps
    det = a * d - b * b
    step_x = (d * dx.double() - b * dy.double()) / det
    step_y = (a * dy.double() - b * dx.double()) / det
    return locations - torch.stack([step_x, step_y], dim=-1).to(locations.dtype)


def decode_heatmaps(
    heatmaps: Tensor,
    input_size: SizeLike,
    method: str = "msra",
    blur_kernel_size: int = 11,
) -> Tuple[Tensor, Tensor]:
    """Heatmaps (N, K, h, w) -> keypoints (N, K, 2) as (x, y) in the network input's pixels and
    scores (N, K) (the heatmap maxima); ``input_size`` is the network input (H, W).

    ``"msra"``: mmpose ``MSRAHeatmap.decode`` (argmax + quarter-pixel shift, times input / heatmap
    size). ``"dark"``: the same with ``unbiased=True`` (DARK refinement on the maps blurred with
    ``blur_kernel_size``). ``"udp"``: ``UDPHeatmap.decode`` (``heatmap_type='gaussian'``), whose
    output is ``location / (heatmap size - 1) * input size``, i.e. the input's corner-to-corner
    extent, the convention :func:`predict` and mmpose map back with.

    Quirks kept: where a maximum is not positive the location is -1 before scaling (so
    ``-input / heatmap`` for msra/dark, and for udp whatever its unguarded refinement reads); an
    all-zero map decodes to NaN with dark/udp only where mmpose's does.
    """
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    if heatmaps.dim() != 4:
        raise ValueError(f"heatmaps must be (N, K, h, w); got shape {tuple(heatmaps.shape)}")
    if heatmaps.dtype not in (torch.float32, torch.float64):  # half precision: decode in float32
        heatmaps = heatmaps.float()
    h, w = heatmaps.shape[-2:]
    in_h, in_w = input_size
    locations, scores = heatmap_maximum(heatmaps)
    if method == "udp":
        locations = _refine_dark_udp(locations, heatmaps, blur_kernel_size)
        factor = torch.tensor([in_w / (w - 1), in_h / (h - 1)], dtype=torch.float64)
        keypoints = (locations.double() * factor.to(locations.device)).to(locations.dtype)
        return keypoints, scores
    if method == "dark":
        locations = _refine_dark(locations, heatmaps, blur_kernel_size)
    else:
        locations = _refine_msra(locations, heatmaps)
    # mmpose's scale_factor is a float32 array.
    factor = torch.tensor([in_w / w, in_h / h], dtype=torch.float32, device=locations.device)
    return locations * factor.to(locations.dtype), scores


# --------------------------------------------------------------------------- the whole chain
def _cfg_value(cfg: Any, key: str) -> Any:
    """``cfg.key`` or ``cfg[key]``; None when ``cfg`` is None or lacks it."""
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(key)
    return getattr(cfg, key, None)


def keypoint_info(model: nn.Module) -> Optional[KeypointInfo]:
    """The model's keypoint metadata: ``pretrained_cfg.keypoint_info`` if set, else COCO-17 for a
    17-keypoint model, else None."""
    cfg = getattr(model, "pretrained_cfg", None)
    info = _cfg_value(cfg, "keypoint_info")
    if isinstance(info, KeypointInfo):
        return info
    if isinstance(info, Mapping):
        return KeypointInfo(
            names=tuple(info["names"]), skeleton=tuple(tuple(p) for p in info["skeleton"]),
            flip_indices=tuple(info["flip_indices"]), sigmas=tuple(info["sigmas"]),
        )
    if getattr(model, "num_keypoints", None) == COCO_KEYPOINTS.num_keypoints:
        return COCO_KEYPOINTS
    return None


def _flip_indices_for(model: nn.Module, num_keypoints: int) -> Sequence[int]:
    cfg = getattr(model, "pretrained_cfg", None)
    indices = _cfg_value(cfg, "flip_indices")
    if indices is None:
        info = keypoint_info(model)
        indices = info.flip_indices if info is not None else None
    if indices is None and num_keypoints == COCO_KEYPOINTS.num_keypoints:
        indices = COCO_KEYPOINTS.flip_indices
    if indices is None:
        raise ValueError(f"flip test needs the flip_indices of the model's {num_keypoints} keypoints: "
                         "pass flip_indices=... or flip_test=False")
    if len(indices) != num_keypoints:
        raise ValueError(f"{len(indices)} flip_indices for {num_keypoints} heatmaps")
    return list(indices)


def _model_output(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if isinstance(out, (list, tuple)):  # a backbone-style output: the stride-4 map is first
        out = out[0]
    return out


@torch.inference_mode()
def predict(
    model: nn.Module,
    image: Tensor,
    boxes: Union[Tensor, Sequence[Sequence[float]]],
    input_size: Optional[SizeLike] = None,
    flip_test: bool = True,
    method: Optional[str] = None,
    normalize: bool = True,
    batch_size: int = 32,
    *,
    flip_indices: Optional[Sequence[int]] = None,
    blur_kernel_size: int = 11,
) -> Tuple[Tensor, Tensor]:
    """Top-down pose of every box: keypoints (N, K, 2) as (x, y) image pixels and scores (N, K).

    ``image``: a (3, H, W) RGB tensor with values in [0, 255], uint8 or float (what mmpose's
    ``LoadImage`` + ``bgr_to_rgb`` data preprocessor feed; a PIL image converted with
    ``torch.from_numpy(np.asarray(img)).permute(2, 0, 1)`` fits). ``boxes``: (N, 4) ``x1, y1, x2, y2``
    person boxes in image pixels.

    Per box, as mmpose's ``TopdownPoseEstimator``: centre/scale with padding 1.25 fixed to the input
    aspect ratio, the affine crop to ``input_size`` (H, W) (UDP warp for ``method="udp"``; crops of
    uint8 images are rounded, as OpenCV's uint8 warp is), ``(x - mean) / std`` with the model's
    statistics, the network in eval mode under ``torch.inference_mode`` in batches of ``batch_size``,
    with ``flip_test`` the average of the heatmaps and :func:`flip_heatmaps` of the flipped crop's
    (shifted except for udp, as mmpose's configs do), :func:`decode_heatmaps`, and the map back
    ``keypoint / input_size * scale + center - scale / 2``.

    Defaults read from ``model.pretrained_cfg`` (attribute or mapping, each optional):
    ``input_size`` (C, H, W) else (256, 192); ``mean`` / ``std`` in [0, 1] units else ImageNet's;
    ``decode_method`` else ``"msra"``; ``flip_indices`` or ``keypoint_info.flip_indices`` else the
    COCO ones for 17 keypoints.
    """
    cfg = getattr(model, "pretrained_cfg", None)
    if input_size is None:
        cfg_size = _cfg_value(cfg, "input_size")
        input_size = tuple(cfg_size[-2:]) if cfg_size is not None else DEFAULT_INPUT_SIZE
    in_h, in_w = int(input_size[0]), int(input_size[1])
    method = method or _cfg_value(cfg, "decode_method") or "msra"
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    udp = method == "udp"
    if image.dim() != 3:
        raise ValueError(f"image must be a (3, H, W) RGB tensor; got shape {tuple(image.shape)}")
    mean = torch.tensor(_cfg_value(cfg, "mean") or IMAGENET_MEAN, dtype=torch.float32) * 255
    std = torch.tensor(_cfg_value(cfg, "std") or IMAGENET_STD, dtype=torch.float32) * 255
    if normalize and image.shape[0] != mean.numel():
        raise ValueError(f"image has {image.shape[0]} channels, the model's mean/std {mean.numel()}")

    boxes = torch.as_tensor(boxes, dtype=torch.float64, device=image.device).reshape(-1, 4)
    center, scale = box_to_center_scale(boxes, aspect_ratio=in_w / in_h)
    param = next(model.parameters(), None)
    device = param.device if param is not None else image.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    mean, std = mean.view(-1, 1, 1).to(device), std.view(-1, 1, 1).to(device)
    is_uint8 = image.dtype == torch.uint8

    all_keypoints, all_scores = [], []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, boxes.shape[0], batch_size):
            part = slice(start, start + batch_size)
            crops = crop(image, center[part], scale[part], (in_h, in_w), udp=udp).to(device)
            if is_uint8:
                crops = crops.round().clamp(0, 255)
            if normalize:
                crops = (crops - mean) / std
            crops = crops.to(dtype)
            heatmaps = _model_output(model, crops).float()
            if flip_test:
                indices = flip_indices if flip_indices is not None else _flip_indices_for(model, heatmaps.shape[1])
                flipped = flip_heatmaps(_model_output(model, crops.flip(-1)).float(), indices, shift=not udp)
                heatmaps = (heatmaps + flipped) * 0.5
            keypoints, scores = decode_heatmaps(heatmaps, (in_h, in_w), method, blur_kernel_size)
            all_keypoints.append(keypoints.to(image.device))
            all_scores.append(scores.to(image.device))
    finally:
        model.train(was_training)
    if not all_keypoints:
        k = getattr(model, "num_keypoints", 0) or 0
        return torch.zeros(0, k, 2, device=image.device), torch.zeros(0, k, device=image.device)
    keypoints = torch.cat(all_keypoints).double()
    # TopdownPoseEstimator.add_pred_to_datasample: input pixels -> image pixels.
    size = torch.tensor([in_w, in_h], dtype=torch.float64, device=image.device)
    keypoints = keypoints / size * scale.unsqueeze(1) + center.unsqueeze(1) - 0.5 * scale.unsqueeze(1)
    return keypoints.float(), torch.cat(all_scores)


__all__ = [
    "DECODE_METHODS", "box_to_center_scale", "crop", "decode_heatmaps", "flip_heatmaps", "heatmap_maximum",
    "keypoint_info", "modulate_heatmaps", "opencv_gaussian_kernel", "predict", "warp_matrix",
]

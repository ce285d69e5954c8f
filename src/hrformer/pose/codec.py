"""The heatmap codec of the top-down pipeline (mmpose 1.x restated in torch, batched over keypoints).

* :func:`flip_heatmaps`: the flip test's heatmap flip (``flip_mode='heatmap'``);
* :func:`decode_heatmaps`: ``MSRAHeatmap.decode`` (``"msra"``, ``"dark"`` = ``unbiased=True``) and
  ``UDPHeatmap.decode`` (``"udp"``, gaussian heatmaps), their quirks included.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError, InputTypeError

DECODE_METHODS = ("msra", "dark", "udp")

SizeLike = Tuple[int, int]


def check_flip_indices(flip_indices: Any, num_keypoints: Optional[int] = None) -> List[int]:
    """``flip_indices`` as a list of ints, or an InputError: it must be a permutation of
    ``0 .. K - 1`` (each keypoint's mirror image, e.g. left eye <-> right eye), ``K`` the number of
    heatmaps when given."""
    try:
        values = [int(i) for i in flip_indices]
        exact = all(not isinstance(i, bool) and int(i) == i for i in flip_indices)
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"flip_indices must be a sequence of ints, got {flip_indices!r}") from e
    if isinstance(flip_indices, (str, bytes)) or not exact:
        raise InputTypeError(f"flip_indices must be a sequence of ints, got {flip_indices!r}")
    if num_keypoints is not None and len(values) != num_keypoints:
        raise InputError(f"{len(values)} flip_indices for {num_keypoints} heatmaps")
    if sorted(values) != list(range(len(values))):
        shown = values if len(values) <= 20 else f"{values[:20]}..."
        raise InputError(f"flip_indices must be a permutation of 0..{len(values) - 1} (keypoint k's mirror "
                         f"image for each k), got {shown}")
    return values


def flip_heatmaps(heatmaps: Tensor, flip_indices: Optional[Sequence[int]], shift: bool = True) -> Tensor:
    """Heatmaps (N, K, h, w) of a horizontally flipped crop -> heatmaps of the unflipped crop.

    Flips the width, swaps left/right channels (``out[:, k] = flipped[:, flip_indices[k]]``) and,
    with ``shift``, moves the result one pixel to the right keeping column 0 (mmpose
    ``flip_heatmaps(flip_mode='heatmap', shift_heatmap=True)``: the flip maps pixel x to w - 1 - x,
    the one-pixel shift compensates the MSRA codec's corner-aligned coordinates).
    """
    flipped = heatmaps.flip(-1)
    if flip_indices is not None:
        indices = check_flip_indices(flip_indices, heatmaps.shape[1])
        flipped = flipped[:, torch.as_tensor(indices, dtype=torch.long, device=heatmaps.device)]
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
    return flipped


def opencv_gaussian_kernel(ksize: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The (ksize,) kernel of ``cv2.getGaussianKernel(ksize, 0)``: OpenCV's fixed binomial kernels up
    to size 7, else a normalised Gaussian of sigma ``0.3 * ((ksize - 1) * 0.5 - 1) + 0.8``."""
    if ksize < 1 or ksize % 2 == 0:
        raise InputError(f"the blur kernel size must be odd and positive, got {ksize}")
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
        raise InputError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    if heatmaps.dim() != 4:
        raise InputError(f"heatmaps must be (N, K, h, w); got shape {tuple(heatmaps.shape)}")
    if heatmaps.dtype not in (torch.float32, torch.float64):  # half precision: decode in float32
        heatmaps = heatmaps.float()
    h, w = heatmaps.shape[-2:]
    in_h, in_w = input_size
    locations, scores = heatmap_maximum(heatmaps)
    if method == "udp":
        if h < 2 or w < 2:
            # UDP maps heatmap pixel 0 and w - 1 onto the input's corners: one pixel has no extent.
            raise InputError(f"UDP decoding needs heatmaps of at least 2x2 pixels, got {h}x{w} (input {in_h}x{in_w}); "
                             "use a larger input_size (at least 8x8 for stride-4 heatmaps) or method='msra'")
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


__all__ = [
    "DECODE_METHODS", "check_flip_indices", "decode_heatmaps", "flip_heatmaps", "heatmap_maximum", "modulate_heatmaps",
    "opencv_gaussian_kernel",
]

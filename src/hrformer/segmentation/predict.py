"""``predict``: semantic segmentation of images with an OCR (or stride-4 segmentation) model.

The official ``seg/segmentor/tester.py`` (restated): single-scale test = one forward pass; the
multi-scale test resizes the (normalised) input for every scale ``s`` to ``(int(H*s), int(W*s))``
with bilinear ``align_corners=True`` interpolation, runs the network on it and on its horizontal
flip (flipping that output back), resizes both main logits to ``(H, W)`` (bilinear,
``align_corners=True``) and **sums the logits** (not probabilities) over scales and flips; the label
map is their argmax.

With ``crop_size`` each of those forward passes becomes a sliding-window pass over the (scaled,
flipped) image (:mod:`.sliding`, mmseg's ``slide`` mode): peak memory then follows the crop, not the
image (HRFormer-T + OCR at 2000x3000: 6.3 GB whole, under 2 GB with 1024x1024 windows).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data_config import cfg_value, resolve_data_config
from ..errors import InputError, InputTypeError
from ..image import ImageLike, load_images
from ..inference import check_model, model_device_dtype, normalize
from ..limits import activation_bytes, check_memory, check_windows
from .results import SegmentationResult
from .sliding import slide_logits, window_count

__all__ = ["predict"]

Size = Union[int, Tuple[int, int]]


def _pair(value: Any, name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise InputError(f"{name} must be a positive int or a pair (height, width) of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_window(crop_size: Optional[Size], stride: Optional[Size]) -> Tuple[Optional[Tuple[int, int]], Tuple[int, int]]:
    if crop_size is None:
        if stride is not None:
            raise InputError("stride needs crop_size: pass crop_size=(h, w) too (sliding windows), or drop stride")
        return None, (0, 0)
    crop = _pair(crop_size, "crop_size")
    if stride is None:  # about two thirds of the crop, as mmseg's configs (769 -> 513, 512 -> 341)
        return crop, (max(crop[0] * 2 // 3, 1), max(crop[1] * 2 // 3, 1))
    step = _pair(stride, "stride")
    if step[0] > crop[0] or step[1] > crop[1]:
        raise InputError(f"stride {step} is larger than crop_size {crop}: pixels between windows would get no "
                         "logits; use a stride <= crop_size")
    return crop, step


def _check_scales(scales: Optional[Sequence[float]]) -> Tuple[float, ...]:
    if scales is None:
        return (1.0,)
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = (scales,)
    if isinstance(scales, (str, bytes)):  # "12" would read as the scales (1.0, 2.0)
        raise InputTypeError(f"scales must be a number or a sequence of numbers, e.g. (0.75, 1.0, 1.25), not the "
                             f"string {scales!r}")
    try:
        values = tuple(float(s) for s in scales)
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"scales must be a sequence of numbers, e.g. (0.75, 1.0, 1.25), got {scales!r}") from e
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"scales must be a non-empty sequence of positive numbers, e.g. (0.75, 1.0, 1.25), got {scales!r}")
    return values


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _coarsest_stride(model: nn.Module) -> Optional[int]:
    """The largest stride of the model's feature maps (32 for HRFormer), if it says."""
    info = getattr(model, "feature_info", None)
    try:
        return int(max(info.reduction())) if info is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _check_budget(model: nn.Module, height: int, width: int, channels: int, scales: Tuple[float, ...], flip: bool,
                  crop: Optional[Tuple[int, int]], stride: Tuple[int, int], batch_size: int,
                  max_memory_gb: Optional[float]) -> None:
    """Refuse, before anything is resized, padded or run, a scale whose pass would exceed the
    memory budget or a window layout with too many forward passes (:mod:`hrformer.limits`)."""
    classes = int(getattr(getattr(model, "head", None), "num_outputs", 0) or 1)
    # At the image's resolution: the normalised input, the logit sum, one resized output, the labels.
    fixed = 4 * height * width * (channels + 2 * classes + 2)
    passes = 0
    for s in scales:
        h, w = int(height * s), int(width * s)
        if min(h, w) < 1:
            raise InputError(f"scale {s} makes the {height}x{width} image empty; use larger scales")
        scaled = 4 * channels * h * w
        if crop is None:
            check_memory(fixed + scaled + activation_bytes(model, h, w),
                         f"segmenting the {width}x{height} image at scale {s:g} ({w}x{h}) in one pass",
                         "use slide mode (crop_size=(512, 512), stride=(341, 341)) or smaller scales", max_memory_gb)
            continue
        ph, pw = max(h, crop[0]), max(w, crop[1])
        count = window_count(ph, crop[0], stride[0]) * window_count(pw, crop[1], stride[1])
        passes += count * (2 if flip else 1)
        batch = min(batch_size, count)
        # The padded input, the windows' logit sum and count map, one batch of windows through the network.
        sliding = 4 * ph * pw * (channels + classes + 1) + activation_bytes(model, crop[0], crop[1], batch)
        check_memory(fixed + scaled + sliding,
                     f"sliding {crop[0]}x{crop[1]} windows ({batch} per pass) over the {width}x{height} image at scale "
                     f"{s:g} ({w}x{h}, padded to {pw}x{ph})",
                     "use smaller scales, a smaller crop_size or batch_size", max_memory_gb)
    if crop is not None:
        check_windows(passes, f"sliding {crop[0]}x{crop[1]} windows with stride {stride} over the {width}x{height} "
                              f"image ({len(scales)} scale(s){', flipped' if flip else ''})",
                      "use a larger stride (two thirds of crop_size is usual) or a larger crop_size")


def _segment(model: nn.Module, x: Tensor, scales: Tuple[float, ...], flip: bool,
             crop: Optional[Tuple[int, int]], stride: Tuple[int, int], batch_size: int, dtype: torch.dtype) -> Tensor:
    """Summed logits (1, K, H, W) float32 of one normalised image ``x`` (1, 3, H, W)."""
    height, width = x.shape[-2:]

    def forward(batch: Tensor) -> Tensor:
        # a stride-4 segmentation head gives logits at 1/4 resolution: back to the window's size
        return _resize(model(batch.to(dtype)).float(), tuple(batch.shape[-2:]))

    total: Optional[Tensor] = None
    for s in scales:
        size = (int(height * s), int(width * s))  # checked by _check_budget
        xs = _resize(x, size)
        for flipped in (False, True) if flip else (False,):
            view = xs.flip(3) if flipped else xs
            out = forward(view) if crop is None else slide_logits(forward, view, crop, stride, batch_size)
            out = _resize(out, (height, width))
            out = out.flip(3) if flipped else out
            if total is None:
                total = out
            else:
                total += out
            del out
    assert total is not None
    return total


def predict(
    model: nn.Module,
    image: ImageLike,
    *,
    channel_order: str = "RGB",
    scales: Optional[Sequence[float]] = None,
    flip: bool = False,
    crop_size: Optional[Size] = None,
    stride: Optional[Size] = None,
    batch_size: int = 1,
    max_memory_gb: Optional[float] = None,
) -> Union[SegmentationResult, List[SegmentationResult]]:
    """Segment ``image``: logits at the image's resolution and their argmax (module docstring).

    Args:
        model: an eval-mode model with a segmentation head (``"ocr"`` or ``"segmentation"``;
            refused otherwise: a training-mode model, a pose / classification model). It is never
            modified, so threads may share it; preprocessing (``mean``, ``std``, ``channel_order``:
            ``"BGR"`` for the official weights) is :func:`~hrformer.data_config.resolve_data_config`'s.
        image: the :mod:`hrformer.image` contract: a path, PIL image, numpy (H, W, 3) array, torch
            (3, H, W) tensor, uint8 or float in [0, 1]; or a batch (B, 3, H, W) / list of them. An
            ``in_chans=1`` model takes gray images (RGB ones converted as Pillow's ``convert("L")``,
            normalised with the mean of the cfg's RGB ``mean`` / ``std``); other channel counts
            take tensors / arrays with that many channels.
        channel_order: ``"RGB"`` or ``"BGR"`` (OpenCV arrays): the order of array / tensor inputs.
        scales: input scales whose logits are summed (numbers, not a string; default ``(1.0,)``;
            the official multi-scale test is ``model.pretrained_cfg["test_scales"]`` =
            (0.75, 1.0, 1.25) with ``flip=True``).
        flip: also run each scale's horizontal flip (its logits flipped back and added).
        crop_size: ``(h, w)`` (or one int) of sliding windows, at least the network's coarsest
            stride (32); ``None``: the whole image in one pass.
        stride: ``(h, w)`` window step, at most ``crop_size`` (default: two thirds of it).
            Overlapping logits are averaged; an image smaller than a crop is padded (:mod:`.sliding`).
        batch_size: windows per forward pass.
        max_memory_gb: the memory budget (:mod:`hrformer.limits`; default
            ``$HRFORMER_MAX_MEMORY_GB`` or 8): a pass whose estimate exceeds it is refused before
            anything is allocated, naming slide mode / smaller scales; so are more than
            :data:`hrformer.limits.MAX_WINDOWS` window passes per image.

    Returns: a :class:`SegmentationResult` (``.logits`` (K, H, W) float32, ``.labels`` (H, W) int64,
    ``.class_names``) for one image, a list of them for a batch or list of images.
    """
    check_model(model, "segmentation")
    scale_values = _check_scales(scales)
    crop, step = _check_window(crop_size, stride)
    coarsest = _coarsest_stride(model)
    if crop is not None and coarsest is not None and min(crop) < coarsest:
        raise InputError(f"crop_size {crop} is smaller than the network's coarsest stride ({coarsest}): windows "
                         f"must be at least {coarsest}x{coarsest}")
    if not isinstance(flip, bool):
        raise InputTypeError(f"flip must be True or False, got {flip!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int (windows per forward pass), got {batch_size!r}")
    preprocessing = resolve_data_config(model)
    channels = preprocessing["input_size"][0]
    images, batched = load_images(image, channel_order=channel_order, in_chans=channels)
    cfg = getattr(model, "pretrained_cfg", None)
    names = cfg_value(cfg, "class_names")
    dataset = cfg_value(cfg, "dataset")
    device, dtype = model_device_dtype(model)
    for img in images:
        _check_budget(model, img.shape[-2], img.shape[-1], channels, scale_values, flip, crop, step, batch_size,
                      max_memory_gb)
    results = []
    with torch.inference_mode():
        for img in images:
            x = normalize(img.to(device).unsqueeze(0), preprocessing)  # img: checked by load_images
            logits = _segment(model, x, scale_values, flip, crop, step, batch_size, dtype)[0]
            results.append(SegmentationResult(logits=logits, labels=logits.argmax(0),
                                              class_names=tuple(names) if names else None, dataset=dataset))
    return results if batched else results[0]

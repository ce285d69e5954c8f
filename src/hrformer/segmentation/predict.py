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

from ..errors import InputError, InputTypeError
from ..image import ImageLike, load_images
from ..inference import check_model, data_config, model_device_dtype, normalize
from .preprocess import segmentation_cfg
from .results import SegmentationResult
from .sliding import slide_logits

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
    try:
        values = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise InputTypeError(f"scales must be a sequence of numbers, e.g. (0.75, 1.0, 1.25), got {scales!r}") from None
    if not values or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"scales must be a non-empty sequence of positive numbers, e.g. (0.75, 1.0, 1.25), got {scales!r}")
    return values


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _segment(model: nn.Module, x: Tensor, scales: Tuple[float, ...], flip: bool,
             crop: Optional[Tuple[int, int]], stride: Tuple[int, int], batch_size: int, dtype: torch.dtype) -> Tensor:
    """Summed logits (1, K, H, W) float32 of one normalised image ``x`` (1, 3, H, W)."""
    height, width = x.shape[-2:]

    def forward(batch: Tensor) -> Tensor:
        # a stride-4 segmentation head gives logits at 1/4 resolution: back to the window's size
        return _resize(model(batch.to(dtype)).float(), tuple(batch.shape[-2:]))

    total: Optional[Tensor] = None
    for s in scales:
        size = (int(height * s), int(width * s))
        if min(size) < 1:
            raise InputError(f"scale {s} makes the {height}x{width} image empty; use larger scales")
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
) -> Union[SegmentationResult, List[SegmentationResult]]:
    """Segment ``image``: logits at the image's resolution and their argmax (module docstring).

    Args:
        model: an eval-mode model with an ``"ocr"`` or ``"segmentation"`` head (refused otherwise:
            a training-mode model, a pose / classification model). It is never modified, so
            threads may share it; preprocessing (``mean``, ``std``, ``channel_order``: ``"BGR"``
            for the official weights) comes from ``model.pretrained_cfg``.
        image: the :mod:`hrformer.image` contract: a path, PIL image, numpy (H, W, 3) array, torch
            (3, H, W) tensor, uint8 or float in [0, 1]; or a batch (B, 3, H, W) / list of them.
        channel_order: ``"RGB"`` or ``"BGR"`` (OpenCV arrays): the order of array / tensor inputs.
        scales: input scales whose logits are summed (default ``(1.0,)``; the official
            multi-scale test is ``model.pretrained_cfg["test_scales"]`` = (0.75, 1.0, 1.25) with
            ``flip=True``).
        flip: also run each scale's horizontal flip (its logits flipped back and added).
        crop_size: ``(h, w)`` (or one int) of sliding windows; ``None``: the whole image in one pass.
        stride: ``(h, w)`` window step, at most ``crop_size`` (default: two thirds of it).
            Overlapping logits are averaged; an image smaller than a crop is padded (:mod:`.sliding`).
        batch_size: windows per forward pass.

    Returns: a :class:`SegmentationResult` (``.logits`` (K, H, W) float32, ``.labels`` (H, W) int64,
    ``.class_names``) for one image, a list of them for a batch or list of images.
    """
    check_model(model, "segmentation")
    scale_values = _check_scales(scales)
    crop, step = _check_window(crop_size, stride)
    if not isinstance(flip, bool):
        raise InputTypeError(f"flip must be True or False, got {flip!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int (windows per forward pass), got {batch_size!r}")
    images, batched = load_images(image, channel_order=channel_order)
    cfg = segmentation_cfg(model)
    preprocessing = data_config(cfg)
    names = cfg.get("class_names")
    dataset = cfg.get("dataset")
    device, dtype = model_device_dtype(model)
    results = []
    with torch.inference_mode():
        for img in images:
            x = normalize(img.to(device).unsqueeze(0), preprocessing)  # img: checked by load_images
            logits = _segment(model, x, scale_values, flip, crop, step, batch_size, dtype)[0]
            results.append(SegmentationResult(logits=logits, labels=logits.argmax(0),
                                              class_names=tuple(names) if names else None, dataset=dataset))
    return results if batched else results[0]

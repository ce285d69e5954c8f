"""Semantic segmentation inference with the OCR models, as the official tester runs them.

The official ``seg/segmentor/tester.py`` (restated): single-scale test = one forward pass; the
multi-scale test resizes the (normalised) input for every scale ``s`` to ``(int(H*s), int(W*s))``
with bilinear ``align_corners=True`` interpolation, runs the network on it and on its horizontal
flip (flipping that output back), resizes both main logits to ``(H, W)`` (bilinear,
``align_corners=True``) and **sums the logits** (not probabilities) over scales and flips; the label
map is their argmax.

Input of :func:`predict`: an image tensor (3, H, W) or batch (B, 3, H, W) in **RGB** order, either
``uint8`` in 0-255 (what Pillow / torchvision's ``read_image`` give) or floating point in [0, 1].
:func:`preprocess` then brings it to what the network was trained on, from the model's
``pretrained_cfg`` (a mapping): channels reordered to ``cfg["channel_order"]`` (``"BGR"`` for the
official segmentation weights, whose loader reads images with OpenCV), then ``(x - mean) / std``
with ``cfg["mean"]`` / ``cfg["std"]`` given in that channel order. Pass ``normalized=True`` to feed a
tensor that is already the network's input.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights.pretrained import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["preprocess", "predict", "colorize", "overlay"]


def _cfg_of(model: nn.Module) -> Mapping[str, Any]:
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if cfg is not None else {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "channel_order": "RGB"}


def preprocess(image: Tensor, cfg: Mapping[str, Any]) -> Tensor:
    """RGB image(s), uint8 0-255 or float [0, 1], (3, H, W) or (B, 3, H, W) -> the normalised float
    batch (B, 3, H, W) in ``cfg["channel_order"]`` (module docstring)."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an RGB image (3, H, W) or batch (B, 3, H, W), got shape {tuple(image.shape)}")
    x = image.float() / 255.0 if not image.is_floating_point() else image.float()
    order = str(cfg.get("channel_order", "RGB")).upper()
    if order == "BGR":
        x = x.flip(1)
    elif order != "RGB":
        raise ValueError(f"unknown channel_order {order!r} (RGB or BGR)")
    mean = torch.tensor(cfg.get("mean", IMAGENET_MEAN), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", IMAGENET_STD), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _resize(x: Tensor, size: Tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@torch.no_grad()
def predict(
    model: nn.Module,
    image: Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    normalized: bool = False,
    cfg: Optional[Mapping[str, Any]] = None,
) -> Tuple[Tensor, Tensor]:
    """Logits summed over ``scales`` (and horizontal flips with ``flip``) at the image's resolution,
    and the label map (their argmax), as the official tester (module docstring).

    Args:
        model: a segmentation model whose ``forward`` returns logits at its input resolution (the
            OCR head; a stride-4 head's logits are resized too). Run in eval mode.
        image: (3, H, W) or (B, 3, H, W) RGB, uint8 0-255 or float [0, 1]; with ``normalized=True``
            the network input itself (B, C, H, W).
        scales: input scales (the official multi-scale test: 0.75, 1.0, 1.25 with ``flip=True``;
            ``model.pretrained_cfg["test_scales"]``).
        cfg: preprocessing (``mean``, ``std``, ``channel_order``); default ``model.pretrained_cfg``.

    Returns: ``(logits, labels)``: (B, K, H, W) float32 and (B, H, W) int64, or (K, H, W) and (H, W)
    for a single (3, H, W) image.
    """
    single = image.dim() == 3
    x = image.unsqueeze(0) if single and normalized else image
    x = x.float() if normalized else preprocess(x, cfg if cfg is not None else _cfg_of(model))
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    h, w = x.shape[-2:]
    was_training = model.training
    model.eval()
    try:
        total: Optional[Tensor] = None
        for s in scales:
            size = (int(h * s), int(w * s))
            xs = _resize(x, size)
            views = [(xs, False)] + ([(xs.flip(3), True)] if flip else [])
            for view, flipped in views:
                out = model(view)
                out = _resize(out.float(), (h, w))
                out = out.flip(3) if flipped else out
                total = out if total is None else total + out
    finally:
        model.train(was_training)
    assert total is not None, "scales is empty"
    labels = total.argmax(1)
    return (total[0], labels[0]) if single else (total, labels)


def colorize(labels: Tensor, palette: Sequence[Tuple[int, int, int]]) -> Tensor:
    """(H, W) label map -> (3, H, W) uint8 RGB picture with ``palette[label]`` (cycled if short)."""
    table = torch.tensor(list(palette), dtype=torch.uint8)
    return table[labels.long() % len(table)].permute(2, 0, 1).contiguous()


def overlay(image: Tensor, labels: Tensor, palette: Sequence[Tuple[int, int, int]], alpha: float = 0.5) -> Tensor:
    """The colour label map blended over a (3, H, W) uint8 RGB image: ``(1-alpha) image + alpha colours``."""
    colors = colorize(labels, palette).float()
    return ((1 - alpha) * image.float() + alpha * colors).round().clamp(0, 255).to(torch.uint8)

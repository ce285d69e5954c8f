"""Image classification with the ImageNet-1k models: the official eval transform, top-k classes and names.

:func:`create_transform` is timm's eval transform in torch alone (no torchvision, no Pillow needed
for tensors): resize the shorter side to ``size / crop_pct`` (antialiased, as Pillow resamples),
centre crop to ``size``, then the model's normalisation. The official HRFormer ``cls/config.py``
evaluates at 224 with crop 0.875 (resize 256) and bicubic interpolation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data_config import resolve_data_config
from .errors import InputError, InputTypeError
from .image import load_images
from .inference import check_model, model_device_dtype, normalize
from .limits import activation_bytes, check_memory

__all__ = ["ClassificationResult", "EvalTransform", "create_transform", "imagenet_class_names", "predict"]

_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> Tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (0 "tench" ... 999 "toilet tissue"):
    the first WordNet lemma of each synset, as torchvision's and Keras' lists."""
    text = resources.files("hrformer").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:  # a damaged install: say so rather than mislabel
        raise RuntimeError(f"hrformer/data/imagenet_classes.txt has {len(names)} names, not 1000: reinstall hrformer")
    return names


def _resize_size(height: int, width: int, size: Tuple[int, int], crop_pct: float) -> Tuple[int, int]:
    """timm ``transforms_imagenet_eval``'s resize: a square ``size`` -> the shorter side to
    ``floor(size / crop_pct)`` (torchvision ``Resize(int)``: the longer side ``int(s * long / short)``);
    otherwise the smallest keep-ratio size covering ``floor(size / crop_pct)`` (timm ``ResizeKeepRatio``)."""
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    if scale[0] == scale[1]:
        s = scale[0]
        if height <= width:
            return s, int(s * width / height)
        return int(s * height / width), s
    ratio = min(height / scale[0], width / scale[1])
    return int(round(height / ratio)), int(round(width / ratio))


def _center_crop(x: Tensor, size: Tuple[int, int]) -> Tensor:
    """torchvision ``CenterCrop``: offsets ``round((side - crop) / 2)``, zero padding if smaller."""
    h, w = x.shape[-2:]
    ch, cw = size
    if h < ch or w < cw:
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        x = F.pad(x, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
        h, w = x.shape[-2:]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x[..., top:top + ch, left:left + cw]


class EvalTransform:
    """Image(s) -> the normalised network input: resize, centre crop, ``(x - mean) / std`` (see
    :func:`create_transform`). Call with any :mod:`hrformer.image` form; returns (C, H, W) for one
    image, (B, C, H, W) for a batch.

    The resize is checked against the memory budget (:mod:`hrformer.limits`, ``max_memory_gb``)
    before it runs: an image of extreme aspect ratio (a 100000x1 strip) would otherwise be resized
    to gigapixels to have its shorter side at ``size / crop_pct``."""

    def __init__(self, cfg: Mapping[str, Any], max_memory_gb: Optional[float] = None) -> None:
        self.input_size = tuple(int(v) for v in cfg["input_size"])
        self.crop_pct = float(cfg["crop_pct"])
        if not 0 < self.crop_pct <= 1:
            raise InputError(f"crop_pct must be in (0, 1], got {cfg['crop_pct']!r}")
        self.interpolation = str(cfg["interpolation"])
        if self.interpolation not in _MODES:
            raise InputError(f"interpolation must be one of {tuple(_MODES)}, got {self.interpolation!r}")
        self.mean, self.std = tuple(cfg["mean"]), tuple(cfg["std"])
        self.channel_order = cfg["channel_order"]
        self.max_memory_gb = max_memory_gb
        self._cfg = {"mean": self.mean, "std": self.std, "channel_order": self.channel_order}

    def _check_resize(self, height: int, width: int, out_size: Tuple[int, int]) -> None:
        """The resized image and the antialiased resize's one-axis intermediate, float32."""
        channels = self.input_size[0]
        rh, rw = out_size
        nbytes = 4 * channels * (rh * rw + max(rh * width, height * rw))
        ratio = max(height, width) / max(1, min(height, width))
        check_memory(nbytes, f"resizing the {width}x{height} image to {rw}x{rh} (shorter side {min(rh, rw)}) for the "
                             "centre crop",
                     f"its aspect ratio is {ratio:,.0f}:1; crop it to the region to classify first", self.max_memory_gb)

    def _one(self, image: Tensor) -> Tensor:
        size = self.input_size[-2:]
        out_size = _resize_size(image.shape[-2], image.shape[-1], size, self.crop_pct)
        x = image.unsqueeze(0)
        if tuple(out_size) != tuple(x.shape[-2:]):
            self._check_resize(image.shape[-2], image.shape[-1], out_size)
            mode = _MODES[self.interpolation]
            antialias = mode in ("bilinear", "bicubic")  # Pillow's filters widen when shrinking
            x = F.interpolate(x, size=out_size, mode=mode, antialias=antialias,
                              **({"align_corners": False} if antialias else {}))
            x = x.clamp(0, 1)  # bicubic overshoots; Pillow's 8-bit output clips there too
        return normalize(_center_crop(x, size), self._cfg)[0]

    def __call__(self, image: Any, *, channel_order: str = "RGB") -> Tensor:
        images, batched = load_images(image, channel_order=channel_order, in_chans=self.input_size[0])
        out = [self._one(x) for x in images]
        return torch.stack(out) if batched else out[0]

    def __repr__(self) -> str:
        h, w = self.input_size[-2:]
        resize = math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)
        return (f"EvalTransform(resize={resize[0] if resize[0] == resize[1] else resize} ({self.interpolation}, "
                f"shorter side), center_crop=({h}, {w}), mean={self.mean}, std={self.std}, "
                f"channel_order={self.channel_order!r})")


def create_transform(model_or_cfg: Any, max_memory_gb: Optional[float] = None) -> EvalTransform:
    """timm's eval transform (``create_transform(**resolve_data_config(model))``) in torch alone,
    from a model (:func:`hrformer.data_config.resolve_data_config`) or a cfg mapping
    (``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``, ``channel_order``; what it
    lacks is ImageNet's). ``max_memory_gb``: the budget of the resize (:mod:`hrformer.limits`).

    ``transform(image)`` -> the network input; e.g. ``model(transform("cat.jpg").unsqueeze(0))``.
    For a 1-channel model RGB images are made gray (Pillow's ``convert("L")``) and normalised with
    the mean of the cfg's RGB ``mean`` / ``std`` (see ``resolve_data_config``).
    """
    if isinstance(model_or_cfg, nn.Module):
        cfg = resolve_data_config(model_or_cfg)
    elif isinstance(model_or_cfg, Mapping) or hasattr(model_or_cfg, "input_size"):
        cfg = resolve_data_config(pretrained_cfg=model_or_cfg)
    else:
        raise InputTypeError(
            f"create_transform takes a model or a data config mapping, not {type(model_or_cfg).__name__}")
    return EvalTransform(cfg, max_memory_gb=max_memory_gb)


@dataclass(frozen=True)
class ClassificationResult:
    """The ``topk`` classes of one image, most probable first: ``indices`` (k,) int64,
    ``probabilities`` (k,) float32 (softmax over all classes), ``names`` (k class names, or None when
    the model's classes are not known: ImageNet-1k names for a 1000-class head)."""

    indices: Tensor
    probabilities: Tensor
    names: Optional[Tuple[str, ...]]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: ``{"classes": [{"index", "name", "probability"}, ...]}``."""
        return {"classes": [
            {"index": int(i), "name": self.names[k] if self.names is not None else None,
             "probability": float(p)}
            for k, (i, p) in enumerate(zip(self.indices.tolist(), self.probabilities.tolist()))
        ]}


def _class_names(model: nn.Module, num_classes: int) -> Optional[Sequence[str]]:
    cfg = getattr(model, "pretrained_cfg", None)
    names = cfg.get("class_names") if isinstance(cfg, Mapping) else getattr(cfg, "class_names", None)
    if names is not None and len(names) == num_classes:
        return names
    return imagenet_class_names() if num_classes == 1000 else None


@torch.inference_mode()
def predict(
    model: nn.Module,
    image: Any,
    topk: int = 5,
    *,
    channel_order: str = "RGB",
    batch_size: int = 32,
    max_memory_gb: Optional[float] = None,
) -> Union[ClassificationResult, List[ClassificationResult]]:
    """The ``topk`` most probable classes of an image (a :class:`ClassificationResult`; a list for a
    batch), through the model's eval transform (:func:`create_transform`).

    ``model``: a classification model in eval mode (refused otherwise, never switched), with a
    classifier (a ``num_classes=0`` model's outputs are pooled features: refused);
    ``image``: any :mod:`hrformer.image` form (path, PIL, numpy HWC, tensor; uint8 or float in
    [0, 1]; a list or 4-D tensor is a batch; gray for an ``in_chans=1`` model, RGB ones converted);
    ``channel_order``: of arrays / tensors (cv2: "BGR"); ``max_memory_gb``: the memory budget of
    the resize and the forward pass (:mod:`hrformer.limits`; default ``$HRFORMER_MAX_MEMORY_GB`` or 8).
    """
    check_model(model, "classification")
    if getattr(getattr(model, "head", None), "num_outputs", None) == 0:
        raise InputError("the model has no classifier (num_classes=0: its outputs are pooled features, not class "
                         "scores); build it with num_classes=N (or use model.forward_features for features)")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise InputError(f"topk must be a positive int, got {topk!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    transform = create_transform(model, max_memory_gb=max_memory_gb)
    images, batched = load_images(image, channel_order=channel_order, in_chans=transform.input_size[0])
    _, height, width = transform.input_size
    check_memory(activation_bytes(model, height, width, min(batch_size, len(images))),
                 f"the forward pass of {min(batch_size, len(images))} {height}x{width} image(s)",
                 "use a smaller batch_size", max_memory_gb)
    device, dtype = model_device_dtype(model)
    results: List[ClassificationResult] = []
    for start in range(0, len(images), batch_size):
        x = torch.stack([transform._one(img.to(device)) for img in images[start:start + batch_size]]).to(dtype)
        logits = model(x).float()
        num_classes = logits.shape[-1]
        if topk > num_classes:
            raise InputError(f"topk={topk} but the model has {num_classes} classes")
        names = _class_names(model, num_classes)
        probabilities, indices = logits.softmax(-1).topk(topk, dim=-1)
        for p, i in zip(probabilities.cpu(), indices.cpu()):
            results.append(ClassificationResult(
                indices=i, probabilities=p, names=tuple(names[k] for k in i.tolist()) if names is not None else None))
    return results if batched else results[0]

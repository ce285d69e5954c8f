"""What every ``predict`` function checks of the model it is given, and never changes.

``predict`` runs under ``torch.inference_mode()`` and leaves the model's mode alone: switching a
shared model to eval and back would race with other threads (and with a training loop), so a model
in training mode is refused instead of fixed. A model whose head belongs to another task is refused
too: its outputs would decode to plausible-looking nonsense.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Tuple

import torch
from torch import Tensor, nn

from .errors import InputError, InputTypeError

# The heads (``model.head_type``) each task's predict can decode.
TASK_HEADS: Dict[str, Tuple[str, ...]] = {
    "pose": ("pose",),
    "segmentation": ("segmentation", "ocr"),
    "classification": ("classification",),
}
_TAGS = {"pose": "a '*.coco_256x192' tag or head='pose'", "segmentation": "an '*_ocr' tag or head='ocr'",
         "classification": "an '*.in1k' tag or head='classification'"}

__all__ = ["TASK_HEADS", "check_model", "data_config", "model_device_dtype", "normalize"]

# What a model without a pretrained_cfg gets (ImageNet statistics of [0, 1] RGB images).
_DEFAULTS: Dict[str, Any] = {
    "input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
    "channel_order": "RGB", "interpolation": "bilinear", "crop_pct": 1.0,
}


def check_model(model: nn.Module, task: str) -> None:
    """Refuse a model that ``task``'s predict would misuse: not an ``nn.Module``, in training mode
    (any submodule; fix: ``model.eval()``), or with a head of another task (``model.head_type``; a
    module without that attribute is taken as the caller's own network and trusted)."""
    if task not in TASK_HEADS:
        raise InputError(f"task must be one of {tuple(TASK_HEADS)}, got {task!r}")
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        where = training[0] if training[0] == "the model" else f"submodule {training[0]!r}"
        raise InputError(
            f"{where} is in training mode (dropout, batch statistics): call model.eval() before predict "
            "(predict never switches modes itself, so that threads can share one model)"
        )
    if not hasattr(model, "head_type"):
        return
    head = model.head_type
    if head not in TASK_HEADS[task]:
        what = f"head {head!r}" if head is not None else "no head (a backbone)"
        raise InputError(f"{task} needs a model with a {' or '.join(map(repr, TASK_HEADS[task]))} head; this one has "
                         f"{what}: create it with {_TAGS[task]}")


def data_config(model_or_cfg: Any) -> Dict[str, Any]:
    """The preprocessing of a model (its ``pretrained_cfg``) or of a cfg (a mapping or an object with
    those attributes): ``input_size`` (C, H, W), ``mean`` / ``std`` of [0, 1] pixels in
    ``channel_order`` ("RGB" / "BGR"), ``interpolation``, ``crop_pct``; what is missing is ImageNet's
    (an ``HRFormer`` without a cfg: its head's usual one, as :func:`hrformer.resolve_data_config`)."""
    cfg = getattr(model_or_cfg, "pretrained_cfg", None) if isinstance(model_or_cfg, nn.Module) else model_or_cfg
    if cfg is None and isinstance(model_or_cfg, nn.Module):
        from .factory import default_pretrained_cfg  # the factory imports the model code: only when needed
        from .model import HRFormer

        if isinstance(model_or_cfg, HRFormer):
            cfg = default_pretrained_cfg("", model_or_cfg)
    out = {}
    for key, default in _DEFAULTS.items():
        value = cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
        out[key] = default if value is None else value
    order = str(out["channel_order"]).upper()
    if order not in ("RGB", "BGR"):
        raise InputError(f"the model's pretrained_cfg has channel_order {out['channel_order']!r}; expected RGB or BGR")
    out["channel_order"] = order
    return out


def normalize(images: Tensor, cfg: Mapping) -> Tensor:
    """(..., 3, H, W) RGB pixels in [0, 1] -> the network input: reordered to ``cfg["channel_order"]``,
    then ``(x - mean) / std`` (``mean`` / ``std`` given in that order), as :func:`data_config` gives."""
    if cfg["channel_order"] == "BGR":
        images = images.flip(-3)
    mean = torch.as_tensor(cfg["mean"], dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(cfg["std"], dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean) / std


def model_device_dtype(model: nn.Module) -> Tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first parameter (CPU / float32 without one)."""
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32

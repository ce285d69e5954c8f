"""What every ``predict`` function checks of the model it is given, and never changes.

``predict`` runs under ``torch.inference_mode()`` and leaves the model's mode alone: switching a
shared model to eval and back would race with other threads (and with a training loop), so a model
in training mode is refused instead of fixed. A model whose head belongs to another task is refused
too: its outputs would decode to plausible-looking nonsense. The task is the head's own
(``model.head.predict_task``); the preprocessing is :func:`hrformer.data_config.resolve_data_config`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .errors import InputError, InputTypeError

TASKS = ("pose", "segmentation", "classification")
# How to get a model for each task, for the refusal's advice.
_TAGS = {"pose": "a '*.coco_256x192' tag or head='pose'", "segmentation": "an '*_ocr' tag or head='ocr'",
         "classification": "an '*.in1k' tag or head='classification'"}

__all__ = ["TASKS", "check_model", "model_device_dtype", "model_task", "normalize"]


def model_task(model: nn.Module) -> Optional[str]:
    """The ``predict`` task whose outputs the model's head gives (``model.head.predict_task``);
    None for a model without a head."""
    return getattr(getattr(model, "head", None), "predict_task", None)


def check_model(model: nn.Module, task: str) -> None:
    """Refuse a model that ``task``'s predict would misuse: not an ``nn.Module``, in training mode
    (any submodule; fix: ``model.eval()``), or whose head (``model.head.predict_task``) belongs to
    another task or is missing. A module without a ``head`` attribute is taken as the caller's own
    network and trusted."""
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        where = training[0] if training[0] == "the model" else f"submodule {training[0]!r}"
        raise InputError(
            f"{where} is in training mode (dropout, batch statistics): call model.eval() before predict "
            "(predict never switches modes itself, so that threads can share one model)"
        )
    if not hasattr(model, "head"):
        return
    found = model_task(model)
    if found != task:
        head = getattr(model.head, "task", None)
        what = f"a {head!r} head (a {found} model)" if model.head is not None else "no head (a backbone)"
        raise InputError(f"{task} needs a model with a {task} head; this one has {what}: create it with {_TAGS[task]}")


def normalize(images: Tensor, cfg: Mapping) -> Tensor:
    """(..., C, H, W) pixels in [0, 1] (RGB for C = 3) -> the network input: reordered to
    ``cfg["channel_order"]`` (3 channels only), then ``(x - mean) / std`` with the C values of
    :func:`hrformer.data_config.resolve_data_config`."""
    if cfg["channel_order"] == "BGR" and images.shape[-3] == 3:
        images = images.flip(-3)
    mean = torch.as_tensor(cfg["mean"], dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(cfg["std"], dtype=images.dtype, device=images.device).view(-1, 1, 1)
    if mean.shape[0] != images.shape[-3] or std.shape[0] != images.shape[-3]:
        raise InputError(f"{images.shape[-3]}-channel images but {mean.shape[0]} mean / {std.shape[0]} std values")
    return (images - mean) / std


def model_device_dtype(model: nn.Module) -> Tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first parameter (CPU / float32 without one)."""
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32

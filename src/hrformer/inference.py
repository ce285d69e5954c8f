"""What every ``predict`` function checks of the model it is given, and never changes.

``predict`` runs under ``torch.inference_mode()`` and leaves the model's mode alone: switching a
shared model to eval and back would race with other threads (and with a training loop), so a model
in training mode is refused instead of fixed. A model whose head belongs to another task is refused
too: its outputs would decode to plausible-looking nonsense.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

# The heads (``model.head_type``) each task's predict can decode.
TASK_HEADS: Dict[str, Tuple[str, ...]] = {
    "pose": ("pose",),
    "segmentation": ("segmentation", "ocr"),
    "classification": ("classification",),
}
_TAGS = {"pose": "a '*.coco_256x192' tag or head='pose'", "segmentation": "an '*_ocr' tag or head='ocr'",
         "classification": "an '*.in1k' tag or head='classification'"}

__all__ = ["TASK_HEADS", "check_model", "model_device_dtype"]


def check_model(model: nn.Module, task: str) -> None:
    """Refuse a model that ``task``'s predict would misuse: not an ``nn.Module``, in training mode
    (any submodule; fix: ``model.eval()``), or with a head of another task (``model.head_type``; a
    module without that attribute is taken as the caller's own network and trusted)."""
    if task not in TASK_HEADS:
        raise ValueError(f"task must be one of {tuple(TASK_HEADS)}, got {task!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        where = training[0] if training[0] == "the model" else f"submodule {training[0]!r}"
        raise ValueError(
            f"{where} is in training mode (dropout, batch statistics): call model.eval() before predict "
            "(predict never switches modes itself, so that threads can share one model)"
        )
    if not hasattr(model, "head_type"):
        return
    head = model.head_type
    if head not in TASK_HEADS[task]:
        what = f"head {head!r}" if head is not None else "no head (a backbone)"
        raise ValueError(f"{task} needs a model with a {' or '.join(map(repr, TASK_HEADS[task]))} head; this one has "
                         f"{what}: create it with {_TAGS[task]}")


def model_device_dtype(model: nn.Module) -> Tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first parameter (CPU / float32 without one)."""
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32

"""Task heads on top of the HRFormer backbone, by name (``create_model(head=...)``)."""

from typing import Dict, Mapping, Optional, Tuple, Type

import torch

from ..errors import InputError
from .base import Head
from .classification import ClassificationHead
from .ocr import OCRHead
from .pose import PoseHead
from .segmentation import SegmentationHead

HEADS: Dict[str, Type[Head]] = {h.task: h for h in (ClassificationHead, PoseHead, SegmentationHead, OCRHead)}



def resolve_head(
    head: Optional[str], num_classes: Optional[int] = None, num_keypoints: Optional[int] = None
) -> Tuple[Optional[Type[Head]], int]:
    """The head class named ``head`` (``None``: no head) and its number of outputs; the output
    argument it does not take (``num_classes`` for ``"pose"``...) is an error, never ignored."""
    if head is not None and head not in HEADS:
        raise InputError(f"head must be one of {sorted(HEADS)} or None, got {head!r}")
    head_type = HEADS[head] if head is not None else None
    given = {"num_classes": num_classes, "num_keypoints": num_keypoints}
    for arg, value in given.items():
        if value is not None and (head_type is None or arg != head_type.output_arg):
            owner = f"head={head_type.task!r}" if head_type is not None else "a model without a head"
            raise InputError(f"{arg}={value!r} does not apply to {owner}")
    if head_type is None:
        return None, 0
    value = given[head_type.output_arg]
    return head_type, head_type.default_outputs if value is None else head_type.check_outputs(value)


def head_in_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Tuple[Optional[str], int]:
    """(head name, number of outputs) of the head a state dict (our key names) holds; (None, 0)
    when it holds none."""
    for name, head_type in HEADS.items():
        found = head_type.outputs_in(state_dict)
        if found is not None:
            return name, found
    return None, 0


__all__ = ["HEADS", "head_in_state_dict", "resolve_head", "ClassificationHead", "Head", "OCRHead", "PoseHead", "SegmentationHead"]

"""What the rest of the package asks of a task head."""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ..errors import InputError


class Head(nn.Module):
    """Base class of the task heads.

    A head declares, so that nothing outside it branches on its name:

    - ``task``: its name in ``create_model(head=...)``; ``pipeline_tag`` its Hugging Face task;
      ``default_input_size`` (H, W) the input its original models were trained at;
    - ``output_arg``: the constructor argument that sets its number of outputs (``num_classes`` or
      ``num_keypoints``), ``default_outputs`` and ``min_outputs`` (0 only where zero outputs mean
      something: the classifier's pooled features);
    - ``classifier_name``: the attribute holding its last layer (what ``reset`` replaces);
    - ``maps_needed``: how many backbone maps it reads (1: the stride-4 map only);
    - ``config_defaults``: the backbone options its original code used, applied by ``create_model``
      unless given (e.g. the pose models' bilinear fusion and single-scale last stage);
    - ``needs_output_size``: ``HRFormer.forward`` passes ``output_size=`` (the input's (H, W)) to
      its ``forward`` (heads whose outputs come at input resolution);
    - the task metadata of its models, which code outside ``heads/`` asks for instead of comparing
      names: ``predict_task`` (the ``hrformer.<task>.predict`` that decodes its outputs),
      ``crop_pct`` (classification's resize-then-crop; 1.0: no crop), ``decode_method`` (pose
      heatmap decoding) and :meth:`default_metadata` (e.g. COCO keypoint names for 17 heatmaps).

    Subclasses are built as ``cls(in_chs, num_outputs, drop_rate=...)`` and map the backbone's maps
    to one tensor.
    """

    task: ClassVar[str]
    pipeline_tag: ClassVar[str]
    default_input_size: ClassVar[Tuple[int, int]] = (224, 224)
    output_arg: ClassVar[str] = "num_classes"
    default_outputs: ClassVar[int] = 1000
    min_outputs: ClassVar[int] = 1
    classifier_name: ClassVar[str]
    maps_needed: ClassVar[int] = 4
    has_dropout: ClassVar[bool] = True
    config_defaults: ClassVar[Dict[str, Any]] = {}
    needs_output_size: ClassVar[bool] = False
    predict_task: ClassVar[str]
    crop_pct: ClassVar[float] = 1.0
    decode_method: ClassVar[Optional[str]] = None

    num_outputs: int

    @classmethod
    def check_outputs(cls, value: Any) -> int:
        """``value`` as this head's number of outputs, or a ValueError naming ``output_arg``."""
        if not isinstance(value, int) or isinstance(value, bool) or value < cls.min_outputs:
            what = "a non-negative" if cls.min_outputs == 0 else "a positive"
            why = "" if cls.min_outputs == 0 else f" (head={cls.task!r} needs at least one output map)"
            raise InputError(f"{cls.output_arg} must be {what} integer{why}, got {value!r}")
        return value

    @classmethod
    def outputs_in(cls, state_dict: Mapping[str, torch.Tensor]) -> Optional[int]:
        """The number of outputs of this head in a state dict (our key names), or None when the
        state dict does not hold this head."""
        weight = state_dict.get(f"head.{cls.classifier_name}.weight")
        return int(weight.shape[0]) if weight is not None else None

    @classmethod
    def default_metadata(cls, num_outputs: int) -> Dict[str, Any]:
        """Pretrained-config fields that describe ``num_outputs`` outputs when no weights say
        otherwise (``keypoint_info``, ``class_names``); empty when nothing is known."""
        return {}

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def new_classifier(self, num_outputs: int) -> nn.Module:
        """A freshly initialised last layer with ``num_outputs`` outputs."""
        raise NotImplementedError

    def reset(self, num_outputs: int) -> None:
        """Replace the last layer by a freshly initialised one with ``num_outputs`` outputs."""
        num_outputs = self.check_outputs(num_outputs)
        setattr(self, self.classifier_name, self.new_classifier(num_outputs))
        self.num_outputs = num_outputs

    def forward(self, feats: List[torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError


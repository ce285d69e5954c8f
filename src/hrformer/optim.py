"""Optimizer parameter groups: layer-wise learning-rate decay from a model's ``group_matcher``.

The matcher format and the grouping rules are timm's (``timm.models.group_parameters``,
``timm.optim.param_groups_layer_decay``), so the same ``model.group_matcher()`` serves both.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from torch import nn

from .errors import InputError, InputTypeError

# A matcher entry whose suffix ends with this joins the group sorted just before it (timm's rule).
MATCH_PREVIOUS_GROUP = 99999


def layer_ids(names: Iterable[str], matcher: Dict[str, Any]) -> Dict[str, int]:
    """Parameter name -> layer id (0 = first) from a ``group_matcher`` dict.

    Each name gets a sort key: the matcher entry's position, then the numbers its regex captures,
    then the entry's suffix (the first matching pattern wins; unmatched names, e.g. the head, sort
    last). Keys are then numbered in order; a key ending in ``MATCH_PREVIOUS_GROUP`` takes the
    previous key's id.
    """
    compiled: List[Tuple["re.Pattern[str]", int, Tuple[float, ...]]] = []
    for position, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        entries = spec if isinstance(spec, (list, tuple)) else [(spec, None)]
        for pattern, suffix in entries:
            compiled.append((re.compile(pattern), position, tuple(suffix or ())))

    def sort_key(name: str) -> Tuple[float, ...]:
        for regex, position, suffix in compiled:
            found = regex.match(name)
            if found:
                return (float(position), *(float(g) for g in found.groups() if g is not None), *suffix)
        return (float("inf"),)

    keys = {name: sort_key(name) for name in names}
    ids: Dict[Tuple[float, ...], int] = {}
    current = -1
    for key in sorted(set(keys.values())):
        if current < 0 or key[-1] != MATCH_PREVIOUS_GROUP:
            current += 1
        ids[key] = current
    return {name: ids[key] for name, key in keys.items()}


def param_groups_layer_decay(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    no_weight_decay: Optional[Iterable[str]] = None,
) -> List[Dict[str, Any]]:
    """Parameter groups for ``torch.optim.AdamW`` (or any optimizer) with layer-wise lr decay.

    Layer ``i`` of ``n`` (from ``model.group_matcher(coarse=False)``; the head is the last) gets
    ``lr * layer_decay ** (n - 1 - i)``: deeper layers learn faster, the head at ``lr``. No weight
    decay for 1-D parameters (biases, norms) and for ``no_weight_decay`` names (default:
    ``model.no_weight_decay()``, the relative position bias tables). Frozen parameters are left
    out. Each group also carries ``layer`` and ``name``; there is no ``lr_scale`` key, since timm's
    schedulers would apply it a second time to the already scaled ``lr``.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise InputError(f"layer_decay must be in (0, 1], got {layer_decay!r}")
    if not hasattr(model, "group_matcher"):
        raise InputTypeError(f"{type(model).__name__} has no group_matcher(); pass an hrformer.HRFormer")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids = layer_ids((n for n, _ in named), model.group_matcher(coarse=False))
    last = max(ids.values(), default=0)
    skip = set(no_weight_decay if no_weight_decay is not None else getattr(model, "no_weight_decay", set)())
    groups: Dict[str, Dict[str, Any]] = {}
    for name, param in named:
        decay = param.ndim > 1 and name not in skip
        layer = ids[name]
        key = f"layer_{layer}_{'decay' if decay else 'no_decay'}"
        if key not in groups:
            scale = layer_decay ** (last - layer)
            groups[key] = {"name": key, "layer": layer, "params": [], "lr": lr * scale,
                           "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(param)
    return list(groups.values())

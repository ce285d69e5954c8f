"""Model registry: ``create_model`` and ``list_models`` in the timm manner."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import fields
from typing import Any, Dict, List, Optional, Sequence, Union

from .config import ARCHS, HRFormerConfig
from .model import HRFormer

_CONFIG_FIELDS = {f.name for f in fields(HRFormerConfig)}


class ModelEntry:
    """A registered architecture: its config and the constructor defaults it implies."""

    def __init__(self, name: str, config: HRFormerConfig, description: str, **defaults: Any) -> None:
        self.name = name
        self.config = config
        self.description = description
        self.defaults = defaults


_MODELS: Dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    _MODELS[entry.name] = entry
    return entry


for _size, _arch in (("t", "hrformer_t"), ("s", "hrformer_s"), ("b", "hrformer_b")):
    register_model(ModelEntry(_arch, ARCHS[_arch], f"HRFormer-{_size.upper()} (paper Table 2)"))
    register_model(ModelEntry(
        f"{_arch}_hrnet", ARCHS[_arch].with_(block="basic"),
        f"HRFormer-{_size.upper()} layout with HRNet basic blocks in place of transformer blocks (paper Table 11)",
    ))


def split_model_name(name: str) -> "tuple[str, str]":
    """``"hrformer_s.coco_256x192"`` -> ``("hrformer_s", "coco_256x192")``; no tag gives ``""``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def get_model_entry(name: str) -> ModelEntry:
    arch, _ = split_model_name(name)
    if arch not in _MODELS:
        close = difflib.get_close_matches(arch, list(_MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Available: {', '.join(sorted(_MODELS))}")
    return _MODELS[arch]


def list_models(pattern: Union[str, Sequence[str]] = "", pretrained: bool = False) -> List[str]:
    """Registered model names matching a wildcard ``pattern`` (or any of several).

    With ``pretrained=True`` lists the ``arch.tag`` names that have weights.
    """
    if pretrained:
        raise NotImplementedError("pretrained weights are not available yet")
    names = sorted(_MODELS)
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    patterns = [p for p in patterns if p]
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def build_model(
    name: str,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> HRFormer:
    """Build an untrained model. Keyword arguments that are :class:`HRFormerConfig` fields change
    the architecture (``ffn_dw=False``, ``shift_windows=True``...); the rest go to :class:`HRFormer`."""
    entry = get_model_entry(name)
    arch_changes = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_FIELDS}
    config = entry.config.with_(**arch_changes) if arch_changes else entry.config
    model_kwargs: Dict[str, Any] = {**entry.defaults, **kwargs}
    if features_only:
        model_kwargs["head"] = None
        if out_indices is not None:
            model_kwargs["out_indices"] = out_indices
    elif out_indices is not None:
        model_kwargs["out_indices"] = out_indices
    try:
        return HRFormer(config, **model_kwargs)
    except TypeError as e:
        raise TypeError(f"create_model({name!r}): {e}") from None


def create_model(
    name: str,
    pretrained: Union[bool, str] = False,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> HRFormer:
    """Create an HRFormer by name, e.g. ``create_model("hrformer_b", head="pose")``.

    ``features_only=True`` returns the backbone, whose ``forward`` gives the maps in
    ``out_indices`` (default: all four) and whose ``feature_info`` describes them.
    """
    if pretrained:
        raise NotImplementedError("pretrained weights are not available yet")
    return build_model(name, features_only=features_only, out_indices=out_indices, **kwargs)

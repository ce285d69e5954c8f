"""Model registry and factory in the timm manner: ``create_model``, ``list_models``, ``from_pretrained``."""

from __future__ import annotations

import difflib
import fnmatch
import os
from dataclasses import fields
from typing import Any, Dict, List, Optional, Sequence, Union

from .checkpoint import PathLike
from .config import ARCHS, HRFormerConfig
from .hub import HF_HUB_PREFIX, LOCAL_DIR_PREFIX, read_config, resolve_saved
from .model import HRFormer
from .pretrained import PretrainedCfg, get_pretrained_cfg, list_pretrained
from .weights import load_pretrained, load_weights

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


def find_architecture(config: HRFormerConfig) -> Optional[str]:
    """The registered name whose configuration is ``config``, if any."""
    return next((name for name, entry in _MODELS.items() if entry.config == config), None)


def list_models(pattern: Union[str, Sequence[str]] = "", pretrained: bool = False) -> List[str]:
    """Registered model names matching a wildcard ``pattern`` (or any of several).

    With ``pretrained=True`` lists the ``arch.tag`` names that have weights (see :mod:`hrformer.pretrained`).
    """
    if pretrained:
        return list_pretrained(pattern)
    names = sorted(_MODELS)
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    patterns = [p for p in patterns if p]
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _instantiate(
    name: str,
    config: HRFormerConfig,
    model_kwargs: Dict[str, Any],
    features_only: bool,
    out_indices: Optional[Sequence[int]],
) -> HRFormer:
    model_kwargs = dict(model_kwargs)
    arch_changes = {k: model_kwargs.pop(k) for k in list(model_kwargs) if k in _CONFIG_FIELDS}
    config = config.with_(**arch_changes) if arch_changes else config
    if features_only:
        model_kwargs["head"] = None
    if out_indices is not None:
        model_kwargs["out_indices"] = out_indices
    try:
        return HRFormer(config, **model_kwargs)
    except TypeError as e:
        raise TypeError(f"create_model({name!r}): {e}") from None


def build_model(
    name: str,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> HRFormer:
    """Build an untrained model. Keyword arguments that are :class:`HRFormerConfig` fields change
    the architecture (``ffn_dw=False``, ``shift_windows=True``...); the rest go to :class:`HRFormer`."""
    entry = get_model_entry(name)
    return _instantiate(name, entry.config, {**entry.defaults, **kwargs}, features_only, out_indices)


def _create_saved(
    source: PathLike,
    load: bool,
    features_only: bool,
    out_indices: Optional[Sequence[int]],
    revision: Optional[str],
    cache_dir: Optional[PathLike],
    kwargs: Dict[str, Any],
) -> HRFormer:
    weights, config_path = resolve_saved(source, revision, cache_dir, weights=load)
    saved = read_config(config_path)
    name = saved.get("architecture") or os.fspath(source)
    model = _instantiate(name, HRFormerConfig.from_dict(saved["config"]), {**saved["model_kwargs"], **kwargs},
                         features_only, out_indices)
    pretrained_cfg = saved.get("pretrained_cfg")
    model.pretrained_cfg = PretrainedCfg.from_dict(pretrained_cfg) if pretrained_cfg else None
    if weights is not None:
        load_weights(model, weights)
    return model


def create_model(
    name: str,
    pretrained: Union[bool, PathLike] = False,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    *,
    checkpoint_path: Optional[PathLike] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    **kwargs: Any,
) -> HRFormer:
    """Create an HRFormer by name, e.g. ``create_model("hrformer_b", head="pose")``.

    Names: ``arch`` (``hrformer_s``), ``arch.tag`` (``hrformer_s.coco_256x192``: the model the
    weights ``tag`` need, see ``list_models(pretrained=True)``), ``hf-hub:org/name[@revision]`` and
    ``local-dir:path`` (a model written by :func:`hrformer.save_pretrained`).

    ``pretrained=True`` loads the weights of the tag (a bare ``arch`` picks its default tag) from the
    Hugging Face Hub (``revision``, ``cache_dir``), else from the original release URL.
    ``pretrained="path"`` or ``checkpoint_path="path"`` loads a local file instead (.safetensors or
    .pth; hrformer, official or mmpose layout). Loading is strict; a different head size or head type
    (``num_classes``, ``num_keypoints``, ``head``, ``features_only``) leaves the head initialised and
    ``in_chans != 3`` adapts the first convolution, both logged on the ``hrformer`` logger.

    ``features_only=True`` returns the backbone, whose ``forward`` gives the maps in
    ``out_indices`` (default: all four) and whose ``feature_info`` describes them.
    """
    if not isinstance(pretrained, bool):
        if checkpoint_path is not None:
            raise ValueError("give the local checkpoint once: pretrained='path' or checkpoint_path='path'")
        if not os.path.exists(pretrained):
            raise FileNotFoundError(
                f"pretrained={os.fspath(pretrained)!r}: no such file. pretrained= takes True/False or the path of a "
                "local checkpoint; choose published weights with the name's tag, e.g. 'hrformer_s.coco_256x192'"
            )
        checkpoint_path, pretrained = pretrained, False
    if name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        load = pretrained and checkpoint_path is None
        model = _create_saved(name, load, features_only, out_indices, revision, cache_dir, kwargs)
        if checkpoint_path is not None:
            load_weights(model, checkpoint_path)
        return model
    arch, tag = split_model_name(name)
    get_model_entry(arch)  # an unknown name fails here, with suggestions
    cfg = get_pretrained_cfg(arch, tag) if tag or (pretrained and checkpoint_path is None) else None
    model = build_model(arch, features_only, out_indices, **{**(cfg.model_kwargs if cfg else {}), **kwargs})
    model.pretrained_cfg = cfg
    if pretrained or checkpoint_path is not None:
        load_pretrained(model, cfg, checkpoint_path, revision, cache_dir)
    return model


def from_pretrained(
    source: PathLike,
    *,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> HRFormer:
    """Rebuild a model written by :func:`hrformer.save_pretrained` / :func:`hrformer.push_to_hub`, in
    eval mode: a local directory (or its ``.safetensors`` file), or a Hub repository
    (``org/name``, ``hf-hub:org/name@revision``). ``kwargs`` change constructor arguments, with the
    same head / ``in_chans`` rules as :func:`create_model`."""
    return _create_saved(source, True, features_only, out_indices, revision, cache_dir, kwargs).eval()

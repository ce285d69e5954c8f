"""Building models: the architecture registry and every entry point that returns a model
(``create_model``, ``from_pretrained``, ``from_original``), all through one builder, plus
``save_pretrained`` / ``push_to_hub``.

Mode: a model whose weights were loaded (``pretrained=True`` or a file, ``from_pretrained``,
``from_original``) is returned in eval mode, ready for inference; an untrained one in train mode,
like any new ``nn.Module``.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .config import ARCHS, CONFIG_FIELDS, ConfigError, HRFormerConfig
from .heads import HEADS
from .model import HRFormer
from .weights import hub
from .weights.files import PathLike
from .weights.layouts import convert_original, load_state_dict_strict
from .weights.loading import load_pretrained, load_weights
from .keypoints import COCO_KEYPOINTS
from .weights.pretrained import PretrainedCfg, get_pretrained_cfg, list_pretrained, pretrained_tags

HF_HUB_PREFIX = hub.HF_HUB_PREFIX
LOCAL_DIR_PREFIX = hub.LOCAL_DIR_PREFIX
_HEAD_OUTPUT_ARGS = frozenset(h.output_arg for h in HEADS.values()) | {"drop_rate"}


class ModelEntry:
    """A registered architecture: its name, config and a one-line description."""

    def __init__(self, name: str, config: HRFormerConfig, description: str) -> None:
        self.name = name
        self.config = config
        self.description = description


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


for _window in (13, 15):
    register_model(ModelEntry(
        f"hrformer_b_w{_window}", ARCHS["hrformer_b"].with_(window_size=_window),
        f"HRFormer-B with {_window}x{_window} windows in every stage (the paper's segmentation models)",
    ))


def split_model_name(name: str) -> Tuple[str, str]:
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


_SEMANTIC_FIELDS = ("rel_pos_bias", "upsample_mode", "multiscale_output", "mask_padding")


def _shape(config: HRFormerConfig) -> Dict[str, Any]:
    """The config without the original-code semantics: what the weights' shapes depend on."""
    return {k: v for k, v in config.to_dict().items() if k not in _SEMANTIC_FIELDS}


def find_architecture(config: HRFormerConfig) -> Optional[str]:
    """The registered name whose shape is ``config``'s (semantics aside), if any."""
    shape = _shape(config)
    return next((name for name, entry in _MODELS.items() if _shape(entry.config) == shape), None)


def list_models(pattern: Union[str, Sequence[str]] = "", pretrained: bool = False) -> List[str]:
    """Registered model names matching a wildcard ``pattern`` (or any of several).

    With ``pretrained=True`` lists the ``arch.tag`` names that have weights (see
    :mod:`hrformer.weights.pretrained`).
    """
    if pretrained:
        return list_pretrained(pattern)
    patterns = [p for p in ([pattern] if isinstance(pattern, str) else pattern) if p]
    names = sorted(_MODELS)
    return [n for n in names if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]


# --------------------------------------------------------------------------- the one builder
def _build(
    name: str,
    config: HRFormerConfig,
    defaults: Dict[str, Any],
    kwargs: Dict[str, Any],
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    head_defaults: bool = True,
) -> HRFormer:
    """The model ``name`` from ``config``, with ``defaults`` (from a pretrained tag or a saved
    config) overridden by the user's ``kwargs``. Keyword arguments that are :class:`HRFormerConfig`
    fields change the architecture; the rest go to :class:`HRFormer`. With ``head_defaults`` (a
    registered architecture, not a saved config) the head's original-code defaults
    (``Head.config_defaults``) fill the config fields that neither sets."""
    merged = {**defaults, **kwargs}
    arch_changes = {k: merged.pop(k) for k in list(merged) if k in CONFIG_FIELDS}
    head = merged.get("head", "classification")
    head_type = HEADS.get(head) if isinstance(head, str) else None
    if features_only:
        # The head named (by the tag or the user) still sets the backbone's original-code defaults.
        given = sorted(k for k in kwargs if k in _HEAD_OUTPUT_ARGS)
        if given:
            raise ValueError(
                f"create_model({name!r}): {', '.join(given)}: does not apply with features_only=True (no head)"
            )
        merged = {k: v for k, v in merged.items() if k not in _HEAD_OUTPUT_ARGS}
        merged["head"] = None
    if head_type is not None and head_defaults:
        arch_changes = {**head_type.config_defaults, **arch_changes}
    if out_indices is not None:
        merged["out_indices"] = out_indices
    try:
        config = config.with_(**arch_changes) if arch_changes else config
        return HRFormer(config, **merged)
    except TypeError as e:
        raise TypeError(f"create_model({name!r}): {e}") from None
    except ConfigError as e:
        raise ConfigError(f"create_model({name!r}): {e}") from None


def build_model(name: str, features_only: bool = False, out_indices: Optional[Sequence[int]] = None,
                **kwargs: Any) -> HRFormer:
    """An untrained registered architecture (no pretrained tag, no weights)."""
    return _build(name, get_model_entry(name).config, {}, kwargs, features_only, out_indices)


def _create_saved(
    source: PathLike,
    load: bool,
    features_only: bool,
    out_indices: Optional[Sequence[int]],
    revision: Optional[str],
    cache_dir: Optional[PathLike],
    kwargs: Dict[str, Any],
) -> HRFormer:
    weights, config_path = hub.resolve_saved(source, revision, cache_dir, weights=load)
    saved = hub.read_config(config_path)
    name = saved.get("architecture") or os.fspath(source)
    config = HRFormerConfig.from_dict(saved["config"], source=f"{config_path} ('config')")
    try:
        model = _build(name, config, dict(saved["model_kwargs"]), kwargs, features_only, out_indices,
                       head_defaults=False)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{config_path} ('model_kwargs' or arguments): {e}") from None
    pretrained_cfg = saved.get("pretrained_cfg")
    model.pretrained_cfg = PretrainedCfg.from_dict(pretrained_cfg) if pretrained_cfg else default_pretrained_cfg(
        name, model)
    if weights is not None:
        load_weights(model, weights)
        model.eval()
    return model


def default_pretrained_cfg(name: str, model: HRFormer) -> PretrainedCfg:
    """The data config of a model built without a tag: its architecture's default tag when that has
    the model's head, else the head's usual input size with ImageNet mean/std (and COCO keypoint
    metadata for a 17-keypoint pose model)."""
    arch, _ = split_model_name(name)
    if pretrained_tags(arch):
        default = get_pretrained_cfg(arch)
        if default.model_kwargs.get("head") == model.head_type:
            return default
    size = model.head.default_input_size if model.head is not None else (224, 224)
    pose = model.head_type == "pose"
    return PretrainedCfg(
        arch, "", {"head": model.head_type, **({model.head.output_arg: model.head.num_outputs} if model.head else {})},
        input_size=(model.in_chans, *size), crop_pct=0.875 if model.head_type == "classification" else 1.0,
        keypoint_info=COCO_KEYPOINTS if pose and model.num_keypoints == 17 else None,
        decode_method="msra" if pose else None, notes="no pretrained weights: the head's usual preprocessing",
    )


def resolve_data_config(model: HRFormer) -> Dict[str, Any]:
    """``input_size``, ``interpolation``, ``mean``, ``std`` and ``crop_pct`` of the model's
    pretrained config, as timm's ``resolve_model_data_config``."""
    cfg = getattr(model, "pretrained_cfg", None) or default_pretrained_cfg("", model)
    return {key: cfg[key] for key in ("input_size", "interpolation", "mean", "std", "crop_pct")}


# --------------------------------------------------------------------------- entry points
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
    ``local-dir:path`` (a model written by :func:`save_pretrained`).

    ``pretrained=True`` loads the weights of the tag (a bare ``arch`` picks its default tag) from the
    Hugging Face Hub (``revision``, ``cache_dir``), else from the original release URL.
    ``pretrained="path"`` or ``checkpoint_path="path"`` loads a local file instead (.safetensors or
    .pth; hrformer, official or mmpose layout). Loading is strict; a different head size or head type
    (``num_classes``, ``num_keypoints``, ``head``, ``features_only``) leaves the head initialised and
    ``in_chans != 3`` adapts the first convolution, both logged on the ``hrformer`` logger. A model
    with loaded weights comes in eval mode, an untrained one in train mode.

    Keyword arguments: :class:`HRFormer`'s (``head``, ``num_classes``...) and the
    :class:`HRFormerConfig` fields (``window_size=13``, ``ffn_dw=False``...); an unknown one is an error.

    ``features_only=True`` returns the backbone, whose ``forward`` gives the maps in
    ``out_indices`` (default: all four) and whose ``feature_info`` describes them.
    """
    if pretrained is None or not isinstance(pretrained, (bool, str, os.PathLike)):
        raise TypeError(f"pretrained must be True/False or the path of a local checkpoint, got {pretrained!r}")
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
            model.eval()
        return model
    arch, tag = split_model_name(name)
    entry = get_model_entry(arch)  # an unknown name fails here, with suggestions
    cfg = get_pretrained_cfg(arch, tag) if tag or (pretrained and checkpoint_path is None) else None
    model = _build(name, entry.config, dict(cfg.model_kwargs) if cfg else {}, kwargs, features_only, out_indices)
    model.pretrained_cfg = cfg or default_pretrained_cfg(arch, model)
    if pretrained or checkpoint_path is not None:
        load_pretrained(model, cfg, checkpoint_path, revision, cache_dir)
        model.eval()
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
    """Rebuild a model written by :func:`save_pretrained` / :func:`push_to_hub`, in eval mode: a
    local directory (or its ``.safetensors`` file), or a Hub repository (``org/name``,
    ``hf-hub:org/name@revision``). ``kwargs`` change constructor arguments, with the same head /
    ``in_chans`` rules as :func:`create_model`."""
    return _create_saved(source, True, features_only, out_indices, revision, cache_dir, kwargs)


def from_original(
    checkpoint: Union[PathLike, Dict[str, Any]],
    arch: Optional[str] = None,
    **overrides: Any,
) -> HRFormer:
    """Build the model an original checkpoint describes (architecture, head, semantics) and load it
    strictly, in eval mode. ``arch`` forces a registered architecture; ``overrides`` change
    constructor arguments that do not affect the weights (e.g. ``mask_padding``)."""
    sd, kwargs = convert_original(checkpoint)
    layout = kwargs.pop("layout")
    name = arch or kwargs.pop("name")
    kwargs.pop("name", None)
    model = _build(name, get_model_entry(name).config, kwargs, overrides)
    name = find_architecture(model.config) or name  # e.g. hrformer_b + window 15 -> hrformer_b_w15
    model.pretrained_cfg = _matching_pretrained_cfg(name, model, layout) or default_pretrained_cfg(name, model)
    load_state_dict_strict(model, sd, source=f"{layout} checkpoint")
    return model.eval()


def _matching_pretrained_cfg(name: str, model: HRFormer, layout: str) -> Optional[PretrainedCfg]:
    """The first registered weights of ``name`` in ``layout`` with the model's head and outputs (their
    preprocessing is the original code's), if any."""
    arch, _ = split_model_name(name)
    for tag in pretrained_tags(arch):
        cfg = get_pretrained_cfg(arch, tag)
        if cfg.layout == layout and cfg.model_kwargs.get("head") == model.head_type and (
                model.head is None or cfg.num_classes == model.head.num_outputs):
            return cfg
    return None


# --------------------------------------------------------------------------- saving
def model_config(model: HRFormer, pretrained_cfg: Optional[PretrainedCfg] = None) -> Dict[str, Any]:
    """What ``config.json`` holds: the registered architecture name (if any), the full
    :class:`HRFormerConfig`, the constructor arguments, and the pretrained config."""
    pretrained_cfg = pretrained_cfg if pretrained_cfg is not None else getattr(model, "pretrained_cfg", None)
    return {
        "architecture": find_architecture(model.config),
        "config": model.config.to_dict(),
        "model_kwargs": model.model_kwargs(),
        "pretrained_cfg": pretrained_cfg.to_dict() if pretrained_cfg is not None else None,
    }


def _check_savable(model: HRFormer) -> None:
    if getattr(model, "is_fused", False):
        raise ValueError(
            "this model was fused for inference (BatchNorm folded into the convolutions): its state dict no longer "
            "matches the architecture. Save the unfused model and fuse it after loading."
        )


def save_pretrained(
    model: HRFormer, path: PathLike, pretrained_cfg: Optional[PretrainedCfg] = None
) -> Tuple["os.PathLike[str]", "os.PathLike[str]"]:
    """Write ``model.safetensors`` and ``config.json`` into the directory ``path`` (or the weights to
    ``path`` itself when it ends in ``.safetensors``); returns both paths. ``pretrained_cfg``
    defaults to ``model.pretrained_cfg``. A fused model is refused."""
    _check_savable(model)
    return hub.write_saved(path, model.state_dict(), model_config(model, pretrained_cfg))


def push_to_hub(
    model: HRFormer,
    repo_id: str,
    pretrained_cfg: Optional[PretrainedCfg] = None,
    revision: Optional[str] = None,
    private: Optional[bool] = None,
    token: Optional[Union[str, bool]] = None,
    commit_message: str = "Upload hrformer weights",
) -> Any:
    """Publish the files :func:`save_pretrained` writes (plus a model card) to a Hub repository,
    creating it if needed. Returns the commit info of ``HfApi.upload_folder``."""
    _check_savable(model)
    task = model.head.pipeline_tag if model.head is not None else "image-feature-extraction"
    return hub.upload_saved(repo_id, model.state_dict(), model_config(model, pretrained_cfg), task, revision,
                            private, token, commit_message)

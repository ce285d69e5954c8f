"""Building models: the architecture registry and every entry point that returns a model
(``create_model``, ``from_pretrained``, ``from_original``), all through one builder, plus
``save_pretrained`` / ``push_to_hub``.

Mode: a model whose weights were loaded (``pretrained=True`` or a file, ``from_pretrained``,
``from_original``) is returned in eval mode, ready for inference; an untrained one in train mode,
like any new ``nn.Module``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from torch import nn

from .config import ARCHS, CONFIG_FIELDS, ConfigError, HRFormerConfig
from .errors import InputError, InputTypeError
from .heads import HEADS
from .keypoints import COCO_KEYPOINTS
from .model import HRFormer
from .weights import hub
from .weights.files import CheckpointError, CheckpointLayoutError, PathLike
from .weights.layouts import LAYOUT_CHANNEL_ORDER
from .weights.loading import (
    Checkpoint,
    fetch_pretrained,
    load_checkpoint,
    local_weights_path,
    read_weights,
    unwrap_model,
)
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
        raise InputError(f"Unknown model {name!r}.{hint} Available: {', '.join(sorted(_MODELS))}")
    return _MODELS[arch]


_SEMANTIC_FIELDS = ("rel_pos_bias", "upsample_mode", "multiscale_output", "mask_padding")


def _shape(config: HRFormerConfig) -> Dict[str, Any]:
    """The config without the original-code semantics: what the weights' shapes depend on."""
    return {k: v for k, v in config.to_dict().items() if k not in _SEMANTIC_FIELDS}


def find_architecture(config: HRFormerConfig) -> Optional[str]:
    """The registered name whose shape is ``config``'s (semantics aside), if any."""
    shape = _shape(config)
    return next((name for name, entry in _MODELS.items() if _shape(entry.config) == shape), None)


def _patterns(pattern: Union[str, Sequence[str]]) -> List[str]:
    return [p for p in ([pattern] if isinstance(pattern, str) else pattern) if p]


def list_models(
    pattern: Union[str, Sequence[str]] = "",
    pretrained: bool = False,
    exclude_filters: Union[str, Sequence[str]] = "",
) -> List[str]:
    """Registered model names matching a wildcard ``pattern`` (or any of several) and none of
    ``exclude_filters``, as timm's ``list_models``.

    With ``pretrained=True`` lists the ``arch.tag`` names that have weights (see
    :mod:`hrformer.weights.pretrained`).
    """
    names = list_pretrained(pattern) if pretrained else sorted(
        n for n in _MODELS if not _patterns(pattern) or any(fnmatch.fnmatchcase(n, p) for p in _patterns(pattern)))
    excluded = _patterns(exclude_filters)
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in excluded)]


# --------------------------------------------------------------------------- the one builder
_HEAD_ARGS = frozenset({"head"} | {h.output_arg for h in HEADS.values()})


def _build(
    name: str,
    config: HRFormerConfig,
    defaults: Dict[str, Any],
    kwargs: Dict[str, Any],
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    head_defaults: bool = True,
) -> HRFormer:
    """The model ``name`` from ``config``, with ``defaults`` (from a pretrained tag, a checkpoint or
    a saved config) overridden by the user's ``kwargs``. Keyword arguments that are
    :class:`HRFormerConfig` fields change the architecture; the rest go to :class:`HRFormer`. With
    ``head_defaults`` (a registered architecture, not a saved config) the head's original-code
    defaults (``Head.config_defaults``) fill the config fields that neither sets."""
    merged = {**defaults, **kwargs}
    arch_changes = {k: merged.pop(k) for k in list(merged) if k in CONFIG_FIELDS}
    head = merged.get("head", "classification")
    head_type = HEADS.get(head) if isinstance(head, str) else None
    if features_only:
        # The head named (by the tag, the weights or the user) still sets the backbone's defaults.
        given = sorted(k for k in kwargs if k in _HEAD_OUTPUT_ARGS)
        if given:
            raise InputError(
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
        raise InputTypeError(f"create_model({name!r}): {e}") from None
    except ConfigError as e:
        raise ConfigError(f"create_model({name!r}): {e}") from None


def _weights_defaults(weights_kwargs: Dict[str, Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments that come with a set of weights (tag, checkpoint, saved config),
    without their head when the user asks for another head type: the backbone keeps the weights'
    semantics, the new head its own outputs and last-stage layout."""
    if "head" in kwargs and kwargs["head"] != weights_kwargs.get("head", "classification"):
        return {k: v for k, v in weights_kwargs.items() if k not in _HEAD_ARGS and k != "multiscale_output"}
    return weights_kwargs


def _requested_adjustments(kwargs: Dict[str, Any], features_only: bool) -> Set[str]:
    """What the user asked to differ from the weights, and so may be adjusted while loading
    (see :mod:`hrformer.weights.loading`); anything else that does not fit is an error."""
    allow = set()
    if features_only or any(k in kwargs for k in _HEAD_ARGS):
        allow.add("head")
    if "in_chans" in kwargs:
        allow.add("in_chans")
    if "window_size" in kwargs:
        allow.add("window")
    return allow


def _create(
    name: str,
    config: HRFormerConfig,
    base_cfg: Optional[PretrainedCfg],
    checkpoint: Optional[Checkpoint],
    kwargs: Dict[str, Any],
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    head_defaults: bool = True,
    saved_kwargs: Optional[Dict[str, Any]] = None,
) -> HRFormer:
    """Every entry point ends here: build the model the weights imply (``base_cfg``: a tag or saved
    pretrained config; ``checkpoint``: the weights read; ``saved_kwargs``: a saved model's
    arguments) as changed by the user's ``kwargs``, set its pretrained config, load the weights
    adjusting only what the user asked for. Loaded models come in eval mode."""
    defaults: Dict[str, Any] = dict(saved_kwargs or (base_cfg.model_kwargs if base_cfg else {}))
    if checkpoint is not None and saved_kwargs is None:  # a saved config is the model, and must fit
        defaults.update({k: v for k, v in checkpoint.implied.items() if k != "name"})
    model = _build(name, config, _weights_defaults(defaults, kwargs), kwargs, features_only, out_indices,
                   head_defaults)
    if saved_kwargs is not None and base_cfg is not None and not _requested_adjustments(kwargs, features_only):
        model.pretrained_cfg = base_cfg  # a saved model's own config, as written
    else:
        model.pretrained_cfg = _pretrained_cfg_for(name, model, base_cfg, checkpoint.layout if checkpoint else None)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, allow=_requested_adjustments(kwargs, features_only))
        model.eval()
    return model


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
    checkpoint_path: Optional[PathLike] = None,
) -> HRFormer:
    weights, config_path = hub.resolve_saved(source, revision, cache_dir, weights=load and checkpoint_path is None)
    saved = hub.read_config(config_path)
    name = saved.get("architecture") or os.fspath(source)
    config = HRFormerConfig.from_dict(saved["config"], source=f"{config_path} ('config')")
    saved_cfg = saved.get("pretrained_cfg")
    if checkpoint_path is not None:
        weights = local_weights_path(checkpoint_path)
    checkpoint = read_weights(weights) if weights is not None else None
    try:
        return _create(name, config, PretrainedCfg.from_dict(saved_cfg) if saved_cfg else None, checkpoint, kwargs,
                       features_only, out_indices, head_defaults=False, saved_kwargs=dict(saved["model_kwargs"]))
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise type(e)(f"{config_path} ('model_kwargs' or arguments): {e}") from None


def _fits(cfg: PretrainedCfg, model: HRFormer) -> bool:
    """Whether ``cfg`` describes ``model``'s head (a backbone fits any: it is the weights' backbone)."""
    return model.head is None or (
        cfg.model_kwargs.get("head") == model.head_type and cfg.num_classes == model.head.num_outputs)


def _pretrained_cfg_for(name: str, model: HRFormer, base: Optional[PretrainedCfg], layout: Optional[str]
                        ) -> PretrainedCfg:
    """The pretrained config of a new model: ``base`` (the tag's or saved one) when it fits the
    model's head; else the registered weights of the same architecture, layout and head; else the
    head's defaults with the preprocessing of ``base`` or of the checkpoint's layout."""
    arch = find_architecture(model.config) or split_model_name(name)[0]
    order = LAYOUT_CHANNEL_ORDER.get(layout or "")
    if base is not None and _fits(base, model):
        cfg = base
    elif base is not None and base.model_kwargs.get("head") == model.head_type:
        # Same head, other size (fine-tuning): the weights' preprocessing, without the per-output metadata.
        cfg = dataclasses.replace(
            base, model_kwargs={**base.model_kwargs, model.head.output_arg: model.head.num_outputs},
            keypoint_info=None, class_names=None,
            notes=f"{base.notes}; head resized to {model.head.num_outputs} outputs".lstrip("; "),
        )
    else:
        registered = _matching_pretrained_cfg(arch, model, layout) if layout not in (None, "hrformer") else None
        if registered is not None:
            return registered
        cfg = default_pretrained_cfg(arch, model)
        if base is not None:
            cfg = dataclasses.replace(cfg, mean=base.mean, std=base.std, channel_order=base.channel_order,
                                      notes=f"backbone weights of {base.name}, new {model.head_type or 'no'} head")
    return dataclasses.replace(cfg, channel_order=order) if order and cfg.channel_order != order else cfg


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


_DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def resolve_data_config(
    args: Optional[Union[Mapping[str, Any], nn.Module]] = None,
    pretrained_cfg: Optional[Mapping[str, Any]] = None,
    model: Optional[nn.Module] = None,
    use_test_size: bool = False,
    verbose: bool = False,
) -> Dict[str, Any]:
    """``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct`` and ``crop_mode`` of a
    model's pretrained config, as timm's ``resolve_data_config`` (``args``: a mapping whose
    non-None entries override, e.g. ``{"input_size": (3, 384, 288)}``) and
    ``resolve_model_data_config`` (``resolve_data_config(model)``). ``use_test_size`` takes a
    segmentation tag's ``test_size``."""
    if isinstance(args, nn.Module):
        if model is not None:
            raise InputTypeError("resolve_data_config: give the model once (positionally or as model=)")
        model, args = args, None
    if args is not None and not isinstance(args, Mapping):
        raise InputTypeError(f"resolve_data_config: args must be a mapping (or the model), got {type(args).__name__}")
    if pretrained_cfg is None:
        if model is None:
            raise InputTypeError("resolve_data_config needs a model or a pretrained_cfg")
        model = unwrap_model(model)
        pretrained_cfg = getattr(model, "pretrained_cfg", None) or default_pretrained_cfg("", model)
    config = {key: pretrained_cfg.get(key) for key in _DATA_KEYS}
    config["crop_mode"] = config["crop_mode"] or "center"
    if use_test_size and pretrained_cfg.get("test_size"):
        config["input_size"] = (config["input_size"][0], *pretrained_cfg["test_size"])
    for key in _DATA_KEYS:
        if args and args.get(key) is not None:
            config[key] = tuple(args[key]) if isinstance(args[key], list) else args[key]
    if verbose:
        print("Data processing configuration:", ", ".join(f"{k}={v}" for k, v in config.items()))
    return config


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
    .pth; hrformer, official or mmpose layout). The weights decide the model: the head and outputs
    they hold (unless you name others) and, for an original layout, its code's semantics and
    preprocessing. Loading is strict except for what you ask to differ: another head or size
    (``head``, ``num_classes``, ``num_keypoints``, ``features_only``: the backbone loads, the head is
    new), ``in_chans`` (first convolution adapted) and ``window_size`` (position tables resized),
    each reported as a warning on the ``hrformer`` logger. A model with loaded weights comes in eval
    mode, an untrained one in train mode.

    Keyword arguments: :class:`HRFormer`'s (``head``, ``num_classes``...) and the
    :class:`HRFormerConfig` fields (``window_size=13``, ``ffn_dw=False``...); an unknown one is an error.

    ``features_only=True`` returns the backbone, whose ``forward`` gives the maps in
    ``out_indices`` (default: all four) and whose ``feature_info`` describes them.
    """
    if pretrained is None or not isinstance(pretrained, (bool, str, os.PathLike)):
        raise InputTypeError(f"pretrained must be True/False or the path of a local checkpoint, got {pretrained!r}")
    if not isinstance(pretrained, bool):
        if checkpoint_path is not None:
            raise InputError("give the local checkpoint once: pretrained='path' or checkpoint_path='path'")
        if not os.path.exists(pretrained):
            raise FileNotFoundError(
                f"pretrained={os.fspath(pretrained)!r}: no such file. pretrained= takes True/False or the path of a "
                "local checkpoint; choose published weights with the name's tag, e.g. 'hrformer_s.coco_256x192'"
            )
        checkpoint_path, pretrained = pretrained, False
    if name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)):
        return _create_saved(name, pretrained or checkpoint_path is not None, features_only, out_indices, revision,
                             cache_dir, kwargs, checkpoint_path)
    arch, tag = split_model_name(name)
    entry = get_model_entry(arch)  # an unknown name fails here, with suggestions
    cfg = get_pretrained_cfg(arch, tag) if tag or (pretrained and checkpoint_path is None) else None
    checkpoint = None
    if checkpoint_path is not None:
        checkpoint = read_weights(local_weights_path(checkpoint_path))
    elif pretrained:
        checkpoint = read_weights(*fetch_pretrained(cfg, revision, cache_dir))
    return _create(name, entry.config, cfg, checkpoint, kwargs, features_only, out_indices)


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
    ``hf-hub:org/name@revision``). Strict: a config that does not fit the weights is an error.
    ``kwargs`` change constructor arguments, with the same head / ``in_chans`` rules as
    :func:`create_model`."""
    return _create_saved(source, True, features_only, out_indices, revision, cache_dir, kwargs)


def from_original(
    checkpoint: Union[PathLike, Dict[str, Any]],
    arch: Optional[str] = None,
    **overrides: Any,
) -> HRFormer:
    """Build the model an original checkpoint describes (architecture, head, semantics,
    preprocessing) and load it strictly, in eval mode: ``create_model(arch, pretrained=checkpoint)``
    with the architecture read from the file. ``arch`` forces a registered architecture (or
    ``arch.tag``); ``overrides`` change constructor arguments, with :func:`create_model`'s rules."""
    loaded = read_weights(checkpoint)
    if loaded.layout == "hrformer":
        raise CheckpointLayoutError(
            f"{loaded.source} already uses hrformer's own key names; load it with hrformer.from_pretrained (a saved "
            "directory) or hrformer.create_model(arch, pretrained=path)"
        )
    return model_from_checkpoint(loaded, arch, **overrides)


def model_from_checkpoint(checkpoint: Checkpoint, name: Optional[str] = None, **kwargs: Any) -> HRFormer:
    """The model a checkpoint already read (:func:`hrformer.weights.read_weights`) holds, loaded, in
    eval mode. ``name`` (an architecture or ``arch.tag``) is needed for our own layout, whose files
    do not say their architecture; an original layout's is read from the tensor shapes."""
    name = name or checkpoint.implied.get("name")
    if name is None:
        raise CheckpointLayoutError(
            f"{checkpoint.source}: weights in hrformer's own layout do not name their architecture; give it "
            "(e.g. create_model('hrformer_t', pretrained=path)) or load the directory save_pretrained wrote"
        )
    arch, tag = split_model_name(name)
    return _create(name, get_model_entry(arch).config, get_pretrained_cfg(arch, tag) if tag else None, checkpoint,
                   kwargs)


def _matching_pretrained_cfg(name: str, model: HRFormer, layout: str) -> Optional[PretrainedCfg]:
    """The first registered weights of ``name`` in ``layout`` with the model's head and outputs (their
    preprocessing is the original code's), if any."""
    arch, _ = split_model_name(name)
    for tag in pretrained_tags(arch):
        cfg = get_pretrained_cfg(arch, tag)
        if cfg.layout == layout and cfg.model_kwargs.get("head") == model.head_type and _fits(cfg, model):
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


def _savable(model: nn.Module) -> HRFormer:
    """The HRFormer to save (wrappers such as DataParallel removed), or an error saying why not."""
    model = unwrap_model(model)
    if not isinstance(model, HRFormer):
        raise InputTypeError(f"expected an hrformer.HRFormer (or a wrapper of one), got {type(model).__name__}")
    if getattr(model, "is_fused", False):
        raise InputError(
            "this model was fused for inference (BatchNorm folded into the convolutions): its state dict no longer "
            "matches the architecture. Save the unfused model and fuse it after loading."
        )
    return model


def save_pretrained(
    model: HRFormer, path: PathLike, pretrained_cfg: Optional[PretrainedCfg] = None
) -> Tuple["os.PathLike[str]", "os.PathLike[str]"]:
    """Write ``model.safetensors`` and ``config.json`` into the directory ``path`` (or the weights to
    ``path`` itself when it ends in ``.safetensors``); returns both paths. ``pretrained_cfg``
    defaults to ``model.pretrained_cfg``. A fused model is refused."""
    if os.path.splitext(os.fspath(path))[1] in hub.TORCH_SUFFIXES:
        raise InputError(
            f"save_pretrained({os.fspath(path)!r}): writes model.safetensors + config.json into a directory (or a "
            "'.safetensors' file with config.json beside it), not a pickle; pass a directory, or use "
            "torch.save(model.state_dict(), path) for a bare .pth"
        )
    model = _savable(model)
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
    model = _savable(model)
    task = model.head.pipeline_tag if model.head is not None else "image-feature-extraction"
    return hub.upload_saved(repo_id, model.state_dict(), model_config(model, pretrained_cfg), task, revision,
                            private, token, commit_message)

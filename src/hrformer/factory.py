"""Building models: one pipeline from a name (and weights) to a loaded model, under every entry point
(``create_model``, ``from_pretrained``, ``from_original``, the command line), plus ``save_pretrained`` /
``push_to_hub``. As timm's ``build_model_with_cfg``:

1. the name -> a registered architecture (:data:`hrformer.config.ARCHITECTURES`) and a pretrained
   config (its tag's, or a saved model's);
2. the weights -> read once into a :class:`~hrformer.weights.Checkpoint` (a tag's download, a local
   file or folder, a Hub repository), which says what model they imply: a saved model's whole config,
   an original checkpoint's architecture, head and semantics;
3. the model's arguments = what the weights imply, overridden by the user's keyword arguments; a head
   other than the weights' brings its own outputs and last-stage layout;
4. the model built, its pretrained config set, the weights adapted by
   :func:`~hrformer.weights.loading.checkpoint_filter_fn` and loaded strictly, eval mode.

Mode: a model whose weights were loaded is returned in eval mode, ready for inference; an untrained
one in train mode, like any new ``nn.Module``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from .config import ARCHITECTURES, CONFIG_FIELDS, Architecture, HRFormerConfig, find_architecture
from .errors import CheckpointLayoutError, HRFormerError, InputError, InputTypeError
from .heads import HEADS, head_in_state_dict
from .model import HRFormer
from .weights import hub
from .weights.files import PathLike
from .weights.loading import (
    Checkpoint,
    describe_state_dict,
    fetch_pretrained,
    load_checkpoint,
    read_weights,
    unwrap_model,
)
from .weights.pretrained import PretrainedCfg, get_pretrained_cfg, list_pretrained, pretrained_tags

HF_HUB_PREFIX = hub.HF_HUB_PREFIX
LOCAL_DIR_PREFIX = hub.LOCAL_DIR_PREFIX
SAVED_PREFIXES = (HF_HUB_PREFIX, LOCAL_DIR_PREFIX)
# The arguments that belong to a head: which one, its outputs, its dropout.
HEAD_ARGS = frozenset({"head", "drop_rate"} | {h.output_arg for h in HEADS.values()})


def split_model_name(name: str) -> Tuple[str, str]:
    """``"hrformer_s.coco_256x192"`` -> ``("hrformer_s", "coco_256x192")``; no tag gives ``""``."""
    arch, _, tag = name.partition(".")
    return arch, tag


def get_model_entry(name: str) -> Architecture:
    """The registered architecture of ``name`` (``arch`` or ``arch.tag``), or an error suggesting close names."""
    arch, _ = split_model_name(name)
    if arch not in ARCHITECTURES:
        close = difflib.get_close_matches(arch, list(ARCHITECTURES), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise InputError(f"Unknown model {name!r}.{hint} Available: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[arch]


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
        n for n in ARCHITECTURES if not _patterns(pattern) or any(fnmatch.fnmatchcase(n, p) for p in _patterns(pattern)))
    excluded = _patterns(exclude_filters)
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in excluded)]


# --------------------------------------------------------------------------- the pipeline
@dataclasses.dataclass(frozen=True)
class Built:
    """What the pipeline built: the model, a description of its weights (``None``: untrained), and
    the model keys left as initialised because the weights do not hold them (a new head)."""

    model: HRFormer
    weights: Optional[str]
    initialised: frozenset

    @property
    def head_trained(self) -> bool:
        return self.weights is not None and not any(k.startswith("head.") for k in self.initialised)


def _resolve_pretrained(arch: str, tag: str, pretrained: Any, checkpoint_path: Optional[PathLike]
                        ) -> Tuple[str, bool, Optional[PathLike]]:
    """(tag, download the tag's weights?, local weights path) from create_model's ``pretrained`` /
    ``checkpoint_path``: ``pretrained`` is True/False, a tag of the architecture, or (the same as
    ``checkpoint_path``) a local file or saved-model folder."""
    if isinstance(pretrained, bool):
        return tag, pretrained and checkpoint_path is None, checkpoint_path
    if not isinstance(pretrained, (str, os.PathLike)):
        raise InputTypeError(f"pretrained must be True/False, a tag or a local path, got {pretrained!r}")
    text = os.fspath(pretrained)
    if arch and text in pretrained_tags(arch) and not os.path.exists(text):
        if tag and tag != text:
            raise InputError(f"two tags given: {arch}.{tag} and pretrained={text!r}")
        if checkpoint_path is not None:
            raise InputError(f"pretrained={text!r} (a tag) and checkpoint_path: give one source of weights")
        return text, True, None
    if checkpoint_path is not None:
        raise InputError("give the local checkpoint once: pretrained='path' or checkpoint_path='path'")
    if not os.path.exists(text):
        tags = ", ".join(pretrained_tags(arch)) or "none"
        raise FileNotFoundError(
            f"pretrained={text!r}: no such file or directory, nor a tag of {arch or 'the model'} (tags: {tags}). "
            "pretrained= takes True/False, a tag, or the path of a local checkpoint / saved model"
        )
    return tag, False, text


def _read_source(name: Optional[str], pretrained: Any, checkpoint: Union[None, PathLike, Checkpoint],
                 revision: Optional[str], cache_dir: Optional[PathLike]
                 ) -> Tuple[Optional[str], Optional[PretrainedCfg], Optional[Checkpoint], Optional[Dict[str, Any]]]:
    """(architecture name, tag or saved pretrained config, weights read, saved model config) of a
    model name and its weights source."""
    if name is not None and name.startswith(SAVED_PREFIXES):
        if checkpoint is not None:
            raise InputError(f"{name} is a saved model: load it alone, without checkpoint_path")
        if not isinstance(pretrained, bool):
            raise InputError(f"{name} is a saved model: pretrained takes True/False")
        weights, saved = hub.resolve_saved(name, revision, cache_dir, weights=pretrained)
        loaded = read_weights(weights) if weights is not None else None
        return None, None, loaded, saved
    arch, tag = split_model_name(name) if name else ("", "")
    if arch:
        get_model_entry(arch)  # an unknown name fails here, with suggestions
    if not isinstance(checkpoint, Checkpoint):
        tag, download, checkpoint = _resolve_pretrained(arch, tag, pretrained, checkpoint)
    else:
        download = False
    cfg = get_pretrained_cfg(arch, tag) if arch and (tag or download) else None
    if isinstance(checkpoint, Checkpoint):
        loaded = checkpoint
    elif checkpoint is not None:
        loaded = read_weights(checkpoint)
    elif download:
        loaded = read_weights(*fetch_pretrained(cfg, revision, cache_dir))
    else:
        loaded = None
    return arch or None, cfg, loaded, loaded.saved if loaded is not None else None


def _base_config(arch: Optional[str], checkpoint: Optional[Checkpoint], saved: Optional[Dict[str, Any]]
                 ) -> Tuple[str, HRFormerConfig, bool]:
    """(model name, config before the weights' and user's arguments, whether the head's original
    defaults fill what neither sets). A saved model is rebuilt from its own config; a registered name
    given with it must be of the same widths and block type (its other options may have been changed)."""
    if saved is not None:
        config = HRFormerConfig.from_dict(saved["config"], source=f"{saved['source']} ('config')")
        held = saved.get("architecture") or find_architecture(config)
        named = get_model_entry(arch).config if arch is not None else config
        if (named.channels, named.block) != (config.channels, config.block):
            raise CheckpointLayoutError(
                f"the saved model is {held or 'an unregistered architecture'} ({_shape_text(config)}), not {arch} "
                f"({_shape_text(get_model_entry(arch).config)}); name its architecture or leave the name out")
        return held or arch or "hrformer", config, False
    if arch is None:
        if checkpoint is None or checkpoint.implied.get("name") is None:
            source = checkpoint.source if checkpoint is not None else "the weights"
            raise CheckpointLayoutError(
                f"{source}: weights in hrformer's own layout without a saved config do not name their architecture; "
                "give it (e.g. create_model('hrformer_t', pretrained=path)) or load the folder save_pretrained wrote"
            )
        arch = checkpoint.implied["name"]
    return arch, get_model_entry(arch).config, True


def _shape_text(config: HRFormerConfig) -> str:
    return f"channels {'/'.join(map(str, config.channels))}, window {config.window_size}, block {config.block}"


def _model_arguments(
    implied: Mapping[str, Any], kwargs: Mapping[str, Any], features_only: bool, out_indices: Optional[Sequence[int]],
    head_defaults: bool,
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(config changes, HRFormer arguments): the weights' ``implied`` arguments under the user's
    ``kwargs``. A head other than the weights' (``head=...`` or ``features_only``) drops the
    weights' head arguments and last-stage layout: the backbone keeps the weights' semantics, the new
    head brings its outputs and its original code's layout (``Head.config_defaults``)."""
    if features_only:
        given = sorted(k for k in kwargs if k in HEAD_ARGS - {"head"})
        if given:
            raise InputError(f"{', '.join(given)}: does not apply with features_only=True (no head)")
    implied = {k: v for k, v in implied.items() if k != "name"}
    if "head" in kwargs and kwargs["head"] != implied.get("head", "classification"):
        implied = {k: v for k, v in implied.items() if k not in HEAD_ARGS and k != "multiscale_output"}
        head_defaults = True
    merged = {**implied, **kwargs}
    head_type = HEADS.get(merged.get("head", "classification") or "")
    config_changes = {k: merged.pop(k) for k in list(merged) if k in CONFIG_FIELDS}
    if head_type is not None and head_defaults:
        config_changes = {**head_type.config_defaults, **config_changes}
    elif head_type is None and head_defaults and "multiscale_output" not in config_changes:
        config_changes["multiscale_output"] = True  # a backbone returns every map
    if features_only:  # the head named (by the weights or the user) still set the backbone's layout
        merged = {k: v for k, v in merged.items() if k not in HEAD_ARGS}
        merged["head"] = None
    if out_indices is not None:
        merged["out_indices"] = out_indices
    return config_changes, merged


def _describe_head(cfg: Optional[PretrainedCfg], model: HRFormer, arch: str) -> PretrainedCfg:
    """The pretrained config of ``model``: ``cfg`` (the weights') when it describes the model's head;
    with the head's new size (and without per-output names) for the same head type; else the head's
    usual input and metadata, keeping ``cfg``'s normalisation and channel order."""
    head = model.head
    outputs = {head.output_arg: head.num_outputs} if head is not None else {}
    same_type = cfg is not None and cfg.model_kwargs.get("head") == model.head_type
    if same_type and (head is None or cfg.model_kwargs.get(head.output_arg, head.default_outputs) == head.num_outputs):
        described = cfg
    elif same_type:
        described = dataclasses.replace(
            cfg, model_kwargs={**cfg.model_kwargs, **outputs}, keypoint_info=None, class_names=None,
            notes=f"{cfg.notes}; head resized to {head.num_outputs} outputs".lstrip("; "))
    else:
        size = head.default_input_size if head is not None else (224, 224)
        described = PretrainedCfg(
            arch, "", {"head": model.head_type, **outputs}, input_size=(model.in_chans, *size),
            crop_pct=head.crop_pct if head is not None else 1.0, decode_method=head.decode_method if head else None,
            notes="no pretrained weights: the head's usual preprocessing",
            **(head.default_metadata(head.num_outputs) if head is not None else {}))
        if cfg is not None:
            described = dataclasses.replace(
                described, mean=cfg.mean, std=cfg.std, channel_order=cfg.channel_order,
                notes=f"backbone weights of {cfg.name}, new {model.head_type or 'no'} head")
    if described.input_size[0] != model.in_chans:
        described = dataclasses.replace(described, input_size=(model.in_chans, *described.input_size[1:]))
    return described


def _check_saved_pair(model: HRFormer, loaded: Checkpoint, saved: Mapping[str, Any]) -> None:
    """A saved config and its weights describe one model: where the model kept the config's head, the
    weights must hold that head (a config edited or mismatched by hand is an error, not adapted)."""
    kwargs = saved["model_kwargs"]
    head = HEADS.get(kwargs.get("head") or "")
    described = (head.task, kwargs.get(head.output_arg, head.default_outputs)) if head else (None, 0)
    built = (model.head_type, model.head.num_outputs if model.head is not None else 0)
    held = head_in_state_dict(loaded.state_dict)
    if held != described and built == described:
        what = f"a {described[0]} head ({described[1]} outputs)" if head else "no head"
        raise CheckpointLayoutError(
            f"{loaded.source} holds {describe_state_dict(loaded.state_dict)}, but {saved['source']} describes {what}: "
            "the config does not belong to these weights")


def _layout_cfg(arch: str, model: HRFormer, layout: str) -> Optional[PretrainedCfg]:
    """The registered weights of ``arch`` in an original ``layout`` with the model's head (their
    preprocessing and metadata are the original code's), if any."""
    for tag in pretrained_tags(arch):
        cfg = get_pretrained_cfg(arch, tag)
        if cfg.layout == layout and _describe_head(cfg, model, arch) is cfg:
            return cfg
    return None


def build_model(
    name: Optional[str],
    pretrained: Any = False,
    features_only: bool = False,
    out_indices: Optional[Sequence[int]] = None,
    *,
    checkpoint: Union[None, PathLike, Checkpoint] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
    **kwargs: Any,
) -> Built:
    """The one pipeline (module docstring). ``name``: ``arch``, ``arch.tag``, ``hf-hub:...``,
    ``local-dir:...``, or None when the weights name their architecture (a saved model, an original
    checkpoint); ``checkpoint``: a local file / saved folder, or a checkpoint already read."""
    arch, cfg, loaded, saved = _read_source(name, pretrained, checkpoint, revision, cache_dir)
    arch, config, head_defaults = _base_config(arch, loaded, saved)
    if saved is not None:
        implied = dict(loaded.implied) if loaded is not None else {
            **saved["model_kwargs"], **{k: v for k, v in saved["config"].items() if k in ("rel_pos_bias",
                                        "upsample_mode", "mask_padding", "multiscale_output")}}
        if saved.get("pretrained_cfg"):
            cfg = PretrainedCfg.from_dict(saved["pretrained_cfg"], source=f"{saved['source']} ('pretrained_cfg')")
    else:
        implied = {**(cfg.model_kwargs if cfg is not None else {}), **(loaded.implied if loaded is not None else {})}
    changes, arguments = _model_arguments(implied, kwargs, features_only, out_indices, head_defaults)
    what = f"create_model({name or (loaded.source if loaded else '')!r})"
    if saved is not None:
        what += f" with {saved['source']} ('model_kwargs' or arguments)"
    try:
        model = HRFormer(config.with_(**changes) if changes else config, **arguments)
    except HRFormerError as e:
        raise type(e)(f"{what}: {e}") from e
    except TypeError as e:  # an unknown keyword argument
        raise InputTypeError(f"{what}: {e}") from e
    registered = find_architecture(model.config) or arch
    if cfg is None and loaded is not None and loaded.layout != "hrformer":
        cfg = _layout_cfg(registered, model, loaded.layout)
    elif cfg is None and loaded is None and pretrained_tags(registered):
        default = get_pretrained_cfg(registered)  # timm: an untrained model carries its default tag's cfg
        cfg = default if default.model_kwargs.get("head") == model.head_type else None
    model.pretrained_cfg = _describe_head(cfg, model, registered)
    if loaded is None:
        return Built(model, None, frozenset())
    if saved is not None:
        _check_saved_pair(model, loaded, saved)
    initialised = load_checkpoint(model, loaded)
    return Built(model.eval(), loaded.source, frozenset(initialised))


# --------------------------------------------------------------------------- entry points
def create_model(
    name: str,
    pretrained: Union[bool, str, PathLike] = False,
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

    ``pretrained``: ``True`` loads the tag's weights (a bare ``arch`` picks its default tag) from the
    Hugging Face Hub (``revision``, ``cache_dir``), else from the original release URL; a string is a
    tag of the architecture (``pretrained="coco_256x192"``) or, like ``checkpoint_path``, a local
    file or folder: ``.safetensors`` / ``.pth`` in hrformer, official or mmpose layout, or what
    :func:`save_pretrained` wrote (whose saved config then rebuilds the model as saved).

    The weights decide the model: the head and outputs they hold (unless you name others) and, for an
    original layout, its code's semantics and preprocessing. Where the model you ask for differs from
    the weights in a way that can be adapted (another head or size, ``in_chans``, window size, the
    last stage's outputs), the weights are adapted and a warning says so on the ``hrformer`` logger;
    any other difference is an error naming both. A model with loaded weights comes in eval mode, an
    untrained one in train mode.

    Keyword arguments: :class:`HRFormer`'s (``head``, ``num_classes``...) and the
    :class:`HRFormerConfig` fields (``window_size=13``, ``ffn_dw=False``...); an unknown one is an error.

    ``features_only=True`` returns the backbone, whose ``forward`` gives the maps in
    ``out_indices`` (default: all four) and whose ``feature_info`` describes them.
    """
    return build_model(name, pretrained, features_only, out_indices, checkpoint=checkpoint_path, revision=revision,
                       cache_dir=cache_dir, **kwargs).model


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
    ``hf-hub:org/name@revision``). ``kwargs`` change constructor arguments, as in :func:`create_model`."""
    text = os.fspath(source)
    if os.path.exists(text) or text.startswith(LOCAL_DIR_PREFIX) or hub.looks_local(text):
        local = text[len(LOCAL_DIR_PREFIX):] if text.startswith(LOCAL_DIR_PREFIX) else text
        weights, _ = hub.resolve_saved(local)  # refuses a file or folder that is no saved model
        return build_model(None, False, features_only, out_indices, checkpoint=weights, **kwargs).model
    name = text if text.startswith(HF_HUB_PREFIX) else HF_HUB_PREFIX + text
    return build_model(name, True, features_only, out_indices, revision=revision, cache_dir=cache_dir,
                       **kwargs).model


def from_original(
    checkpoint: Union[PathLike, Dict[str, Any]],
    arch: Optional[str] = None,
    **overrides: Any,
) -> HRFormer:
    """Build the model an original checkpoint describes (architecture, head, semantics,
    preprocessing) and load it, in eval mode: ``create_model(arch, pretrained=checkpoint)`` with the
    architecture read from the file. ``arch`` forces a registered architecture (or ``arch.tag``);
    ``overrides`` change constructor arguments, as in :func:`create_model`."""
    loaded = read_weights(checkpoint)
    if loaded.layout == "hrformer":
        raise CheckpointLayoutError(
            f"{loaded.source} already uses hrformer's own key names; load it with hrformer.from_pretrained (a saved "
            "directory) or hrformer.create_model(arch, pretrained=path)"
        )
    return build_model(arch, False, checkpoint=loaded, **overrides).model



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
    if model.is_fused:
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

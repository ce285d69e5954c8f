"""The one loading path: any checkpoint (file or state dict; our layout, a saved model, or an
original one) is read once into a :class:`Checkpoint` (our key names, its layout, the model it
implies), then loaded into a model by :func:`load_checkpoint`: the state dict is adapted to the
model by one filter function, :func:`checkpoint_filter_fn` (timm's ``checkpoint_filter_fn``), then
loaded strictly. What is adapted is decided by comparing the model with the checkpoint, never by how
the model was asked for; each adaptation is reported as a warning on the ``hrformer`` logger
(visible by default):

- ``head``: a head that differs from the checkpoint's (other ``num_classes``/``num_keypoints``,
  another head type, or none) is not loaded; with the same head type only its last layer is
  dropped. Stage-4 fusion tensors for maps the model does not compute are dropped, and those it
  computes but the checkpoint lacks (single-scale weights under a four-map head) stay initialised;
- ``in_chans``: the first convolution adapted (summed for 1 channel, repeated and rescaled
  otherwise, as in timm);
- ``window``: relative position bias tables of another window size (ImageNet window-7 weights into
  a window 13 / 15 segmentation model) resized, each head's (2K-1)x(2K-1) table as an image,
  bilinearly (``align_corners=False``), as the official segmentation code's loader does.

Everything else must match exactly, and nothing is loaded unless it does; a mismatch names the
architecture the checkpoint holds. Which entry point loads a file does not matter: its layout
decides the original-code semantics and the preprocessing (the official segmentation code feeds
BGR images). The model is any :class:`hrformer.HRFormer` (this package builds no model: see
:mod:`hrformer.factory`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from typing import Any, Collection, Dict, List, Mapping, Optional, Set, Tuple, Union

import torch
import torch.nn.functional as F

from ..config import ARCHS, NAME_FREE_FIELDS, SEMANTIC_FIELDS
from ..errors import InputError
from ..heads import HEADS, head_in_state_dict
from .files import CheckpointLayoutError, PathLike, StateDict, read_checkpoint, unwrap_state_dict
from .hub import WeightsUnavailableError, download_hub_file, download_url, is_offline, saved_config, saved_paths
from .layouts import LAYOUT_SEMANTICS, convert_original, detect_layout
from .pretrained import PretrainedCfg

logger = logging.getLogger("hrformer")

FIRST_CONV = "stem.conv1.conv.weight"


# --------------------------------------------------------------------------- reading
@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in our key names. ``layout`` is where it came from (:data:`~.layouts.LAYOUTS`);
    ``implied`` the :func:`hrformer.create_model` keyword arguments it implies: for an original
    layout its architecture (``name`` and the shape fields that differ), head, outputs and
    original-code semantics; for our layout its head and outputs, and for a saved model (a file
    written by ``save_pretrained``) everything its config holds. ``saved``: that config
    (``architecture``, ``config``, ``model_kwargs``, ``pretrained_cfg``), else None."""

    state_dict: StateDict
    layout: str
    implied: Dict[str, Any]
    source: str
    saved: Optional[Dict[str, Any]] = None


def read_weights(checkpoint: Union[PathLike, Mapping[str, Any]], source: Optional[str] = None) -> Checkpoint:
    """Read a checkpoint file or (wrapped) state dict, detect its layout and convert it to ours."""
    saved = None
    if isinstance(checkpoint, (str, os.PathLike)):
        path = saved_paths(checkpoint)[0] if os.path.isdir(checkpoint) else checkpoint
        source = source or os.fspath(path)
        saved = saved_config(path)
        checkpoint = read_checkpoint(path)
    sd = unwrap_state_dict(checkpoint)
    layout = detect_layout(sd)
    if saved is not None:
        if layout != "hrformer":
            raise CheckpointLayoutError(f"{source}: a saved model's file in the {layout} layout (corrupt save?)")
        semantics = {k: v for k, v in saved["config"].items() if k in NAME_FREE_FIELDS}
        implied = {**saved["model_kwargs"], **semantics}
    elif layout == "hrformer":
        head, outputs = head_in_state_dict(sd)
        implied: Dict[str, Any] = {"head": head}
        if head is not None:
            implied[HEADS[head].output_arg] = outputs
        last = _last_stage4_module(sd)
        if last is not None:
            implied["multiscale_output"] = any(k.startswith(f"stage4.hr_modules.{last}.fusion.paths.1.") for k in sd)
    else:
        sd, implied = convert_original(sd)
    return Checkpoint(sd, layout, implied, source or "state dict", saved)


def _last_stage4_module(sd: Mapping[str, torch.Tensor]) -> Optional[int]:
    found = {int(m[1]) for k in sd for m in [re.match(r"stage4\.hr_modules\.(\d+)\.", k)] if m}
    return max(found) if found else None


# --------------------------------------------------------------------------- what a file holds
def is_fused_state_dict(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` comes from a model after ``fuse_for_inference`` (BatchNorm folded away)."""
    return "stage1.0.conv1.conv.bias" in sd and "stage1.0.conv1.bn.running_var" not in sd


def describe_state_dict(sd: Mapping[str, torch.Tensor]) -> str:
    """What a state dict in our key names holds, e.g. ``"hrformer_b (channels 78/156/312/624,
    stage modules 1/1/4/2, window 7) with a pose head (17 outputs)"``."""
    channels = []
    for branch in range(4):
        block = f"stage4.hr_modules.0.branches.{branch}.0."
        # norm1 of a transformer block, else the first BatchNorm of a basic block: both C wide.
        key = next((k for k in (block + "norm1.weight", block + "conv1.bn.weight") if k in sd), None)
        channels.append(int(sd[key].shape[0]) if key else None)
    if None in channels:
        arch = "an unrecognised network (no four-branch stage 4)"
    else:
        name = next((n for n, c in ARCHS.items() if c.channels == tuple(channels)), "a custom width")
        modules = [1] + [len({m[1] for k in sd for m in [re.match(rf"stage{s}\.hr_modules\.(\d+)\.", k)] if m})
                         for s in (2, 3, 4)]
        table = next((v for k, v in sd.items() if k.endswith("relative_position_bias_table")), None)
        window = f", window {math.isqrt(table.shape[0]) // 2 + 1}" if table is not None else ""
        arch = (f"{name} (channels {'/'.join(map(str, channels))}, stage modules "
                f"{'/'.join(map(str, modules))}{window})")
    head, outputs = head_in_state_dict(sd)
    what = f"{arch} with a {head} head ({outputs} outputs)" if head else f"{arch} without a head"
    return what + (", fused for inference (BatchNorm folded)" if is_fused_state_dict(sd) else "")


# --------------------------------------------------------------------------- adjustments
def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-conv weight (out, 3, k, k) for ``in_chans`` inputs: summed over RGB for 1 channel,
    else RGB repeated cyclically and scaled by ``3 / in_chans`` (activations keep their scale)."""
    src = weight.shape[1]
    if in_chans == src:
        return weight
    if src != 3:
        raise CheckpointLayoutError(f"cannot adapt a first convolution with {src} input channels to {in_chans}")
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / 3), 1, 1)[:, :in_chans] * (3 / in_chans)
    return w.to(weight.dtype)


def resize_rel_pos_table(table: torch.Tensor, num_positions: int) -> torch.Tensor:
    """A (L, heads) relative position bias table, L = (2K-1)**2, resized to ``num_positions``
    = (2K'-1)**2 entries: each head's table seen as a (2K-1)x(2K-1) image, bilinear with
    ``align_corners=False`` (the official segmentation loader, ``ModuleHelper.load_model``)."""
    old, new = math.isqrt(table.shape[0]), math.isqrt(num_positions)
    if old * old != table.shape[0] or new * new != num_positions:
        raise CheckpointLayoutError(f"relative position tables must be square, got {table.shape[0]} -> {num_positions}")
    heads = table.shape[1]
    image = table.float().t().reshape(1, heads, old, old)
    resized = F.interpolate(image, size=(new, new), mode="bilinear", align_corners=False)
    return resized.reshape(heads, new * new).t().contiguous().to(table.dtype)


def _fit_rel_pos_tables(sd: StateDict, own: Mapping[str, torch.Tensor], source: str) -> StateDict:
    keys = [k for k in sd if k.endswith("relative_position_bias_table") and k in own
            and sd[k].dim() == 2 and own[k].dim() == 2 and sd[k].shape[1] == own[k].shape[1]
            and sd[k].shape[0] != own[k].shape[0]]
    if not keys:
        return sd
    sizes = sorted({(math.isqrt(sd[k].shape[0]) // 2 + 1, math.isqrt(own[k].shape[0]) // 2 + 1) for k in keys})
    logger.warning("%s: %d relative position bias tables resized (bilinear) for window %s", source, len(keys),
                   ", ".join(f"{a} -> {b}" for a, b in sizes))
    return {**sd, **{k: resize_rel_pos_table(sd[k], own[k].shape[0]) for k in keys}}


def _fit_head(
    model: torch.nn.Module, sd: StateDict, own: Mapping[str, torch.Tensor], source: str
) -> Tuple[StateDict, Set[str]]:
    """Drop the checkpoint's head weights that do not fit the model; returns (state dict, model keys
    allowed to stay as initialised)."""
    ckpt_head = {k for k in sd if k.startswith("head.")}
    own_head = {k for k in own if k.startswith("head.")}

    def fits(keys: Set[str]) -> bool:
        return all(sd[k].shape == own[k].shape for k in keys)

    if ckpt_head == own_head and fits(own_head):
        return sd, set()
    # The head's last layer: the part that depends on num_classes / num_keypoints.
    prefix = f"head.{model.head.classifier_name}." if model.head is not None else ""
    ckpt_last = {k for k in ckpt_head if prefix and k.startswith(prefix)}
    own_last = {k for k in own_head if prefix and k.startswith(prefix)}
    if prefix and ckpt_head and ckpt_head - ckpt_last == own_head - own_last and fits(own_head - own_last):
        dropped, keep_init = ckpt_last, own_last
        layer = prefix.rstrip(".")
        _, n_ckpt = head_in_state_dict(sd)
        logger.warning("%s: the model's %s has %d outputs, the checkpoint's %d: %s not loaded (initialised)",
                       source, layer, model.head.num_outputs, n_ckpt, layer)
    else:
        dropped, keep_init = ckpt_head, own_head
        if ckpt_head and own_head:
            logger.warning("%s: the checkpoint's head does not fit the %s head: head not loaded (initialised)",
                           source, model.head_type)
        elif ckpt_head:
            logger.warning("%s: the model has no head: %d head tensors of the checkpoint not loaded",
                           source, len(ckpt_head))
        else:
            logger.warning("%s: the checkpoint has no head: the %s head is initialised", source, model.head_type)
    return {k: v for k, v in sd.items() if k not in dropped}, keep_init


def _fit_stage4_outputs(
    model: torch.nn.Module, sd: StateDict, own: Mapping[str, torch.Tensor], source: str
) -> Tuple[StateDict, Set[str]]:
    """Single-scale model, multi-scale checkpoint: drop the fusion into the stride 8-32 outputs;
    the reverse: those fusion tensors stay initialised."""
    last = len(model.stage4.hr_modules) - 1
    pattern = re.compile(rf"stage4\.hr_modules\.{last}\.fusion\.paths\.[1-9]")
    extra = [k for k in sd if k not in own and pattern.match(k)]
    missing = {k for k in own if k not in sd and pattern.match(k)}
    if extra:
        logger.warning("%s: multi-scale checkpoint, single-scale model: %d stage-4 fusion tensors for the "
                       "stride 8-32 outputs not loaded", source, len(extra))
        sd = {k: v for k, v in sd.items() if k not in extra}
    if missing:
        logger.warning("%s: single-scale checkpoint, multi-scale model: %d stage-4 fusion tensors for the "
                       "stride 8-32 outputs initialised", source, len(missing))
    return sd, missing


def checkpoint_filter_fn(
    state_dict: StateDict, model: torch.nn.Module, source: str = "checkpoint"
) -> Tuple[StateDict, Set[str]]:
    """``state_dict`` (our key names) adapted to ``model`` wherever they differ in a way that can be
    adapted: the head, the stage-4 outputs, the window tables and the first convolution's input
    channels (module docstring), each with a warning. Returns the adapted state dict and the model
    keys that stay as initialised (a new head). Everything else is left for the strict load to
    report, naming both sides."""
    own = model.state_dict()
    sd, keep_init = _fit_head(model, state_dict, own, source)
    sd, missing = _fit_stage4_outputs(model, sd, own, source)
    sd = _fit_rel_pos_tables(sd, own, source)
    if FIRST_CONV in sd and FIRST_CONV in own and sd[FIRST_CONV].dim() == 4 and \
            sd[FIRST_CONV].shape[1] != own[FIRST_CONV].shape[1]:
        sd = {**sd, FIRST_CONV: adapt_input_conv(sd[FIRST_CONV], own[FIRST_CONV].shape[1])}
        logger.warning("%s: first convolution adapted from 3 to %d input channels", source, own[FIRST_CONV].shape[1])
    return sd, keep_init | missing


# --------------------------------------------------------------------------- loading
def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def load_checkpoint(model: torch.nn.Module, checkpoint: Checkpoint) -> Set[str]:
    """Load ``checkpoint`` into ``model``: adapted by :func:`checkpoint_filter_fn`, then strictly. A
    checkpoint whose original code computes differently from the model (semantics) is loaded with a
    warning; an original layout's input channel order becomes the model's ``pretrained_cfg``'s.
    Returns the model keys left as initialised (a head the checkpoint does not hold)."""
    model = unwrap_model(model)
    source, layout = checkpoint.source, checkpoint.layout
    differ = [f"{k}={checkpoint.implied[k]!r} (model: {getattr(model.config, k)!r})" for k in SEMANTIC_FIELDS
              if k in checkpoint.implied and checkpoint.implied[k] != getattr(model.config, k)]
    if differ:
        logger.warning("%s: %s checkpoint, whose code computes %s; outputs will differ from the original. "
                       "hrformer.from_original builds the matching model.", source, layout, ", ".join(differ))
    sd, keep_init = checkpoint_filter_fn(checkpoint.state_dict, model, source)
    load_state_dict_strict(model, sd, source=f"{source} ({layout} layout)", allow_missing=keep_init,
                           holds=describe_state_dict(checkpoint.state_dict))
    semantics = LAYOUT_SEMANTICS.get(layout)
    cfg = getattr(model, "pretrained_cfg", None)
    if semantics is not None and isinstance(cfg, PretrainedCfg) and cfg.channel_order != semantics.channel_order:
        model.pretrained_cfg = dataclasses.replace(
            cfg, channel_order=semantics.channel_order,
            notes=f"{cfg.notes}; {layout} weights: {semantics.channel_order} input".lstrip("; "))
    return keep_init


def load_weights(
    model: torch.nn.Module, checkpoint: Union[PathLike, Mapping[str, Any]], source: Optional[str] = None
) -> None:
    """Load a checkpoint file or (wrapped) state dict into ``model``: hrformer, official or mmpose key
    layout; strict except for the head, ``in_chans`` and window adjustments (module docstring)."""
    load_checkpoint(model, read_weights(checkpoint, source))


def load_state_dict_strict(
    model: torch.nn.Module,
    sd: Mapping[str, torch.Tensor],
    source: str = "checkpoint",
    allow_missing: Collection[str] = (),
    holds: Optional[str] = None,
) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what is missing / unexpected /
    misshapen, and says what the checkpoint holds (``holds``, else described from ``sd``).

    Keys in ``allow_missing`` may be absent from ``sd`` (they keep the model's values). Nothing is
    loaded unless everything else matches.
    """
    model = unwrap_model(model)
    own = model.state_dict()
    if is_fused_state_dict(own):
        raise InputError("this model was fused for inference: load the weights into the unfused model, then fuse it")
    not_float = [f"{k} ({sd[k].dtype})" for k in own if k in sd and own[k].is_floating_point()
                 and not sd[k].is_floating_point()]
    if not_float:
        raise CheckpointLayoutError(
            f"{source}: {len(not_float)} weight(s) stored as non-floating-point tensors, which a float parameter "
            f"would misread (bool: NaN): {', '.join(not_float[:8])}")
    missing = [k for k in own if k not in sd and k not in allow_missing]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def show(items: List[str]) -> str:
            return ", ".join(items[:8]) + (f" ... (+{len(items) - 8} more)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {show(shapes)}")
        holds = holds or describe_state_dict(sd)
        model_is = describe_state_dict(own)
        hint = (" Save and load the unfused model (fuse_for_inference after loading)."
                if is_fused_state_dict(sd) else "")
        raise CheckpointLayoutError(
            f"{source} holds {holds}; the model is {model_is}.{hint} " + "; ".join(parts))
    model.load_state_dict(sd, strict=not any(k not in sd for k in allow_missing))


# --------------------------------------------------------------------------- finding pretrained weights
def fetch_pretrained(
    cfg: PretrainedCfg, revision: Optional[str] = None, cache_dir: Optional[PathLike] = None
) -> Tuple[str, str]:
    """(local path, source name) of the weights ``cfg`` from the first place that has them: the Hub
    (``cfg.hf_hub_id`` at ``revision``), then the original release (``cfg.url``: downloaded and
    hash-checked).

    Raises :class:`~hrformer.weights.WeightsUnavailableError` listing every source tried and how to
    pass a local file instead.
    """
    tried: List[str] = []
    if cfg.hf_hub_id:
        try:
            return (download_hub_file(cfg.hf_hub_id, cfg.hf_hub_filename, revision, cache_dir),
                    f"{cfg.hf_hub_id}/{cfg.hf_hub_filename}")
        except WeightsUnavailableError as e:
            tried.append(str(e))
    if cfg.url:
        try:
            path = download_url(cfg.url, cache_dir)
        except WeightsUnavailableError as e:
            tried.append(str(e))
        else:
            if tried:
                logger.info("%s: not on the Hub (%s); converting the original release %s", cfg.name, tried[0], path)
            return path, path
    else:
        where = f" (released at {cfg.origin_url}: download it by hand)" if cfg.origin_url else ""
        tried.append(f"original release: no direct download URL{where}")
    offline = " The machine is offline (HF_HUB_OFFLINE=1)." if is_offline() else ""
    raise WeightsUnavailableError(
        f"Could not get the pretrained weights {cfg.name}.{offline}\n  tried:\n    - " + "\n    - ".join(tried)
        + f"\n  Pass a local file instead: create_model({cfg.name!r}, pretrained='path/to/checkpoint') "
        "(or checkpoint_path=...): .safetensors or .pth, in hrformer, official or mmpose layout."
    )

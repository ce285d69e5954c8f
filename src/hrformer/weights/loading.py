"""Loading weights into a model: any checkpoint file or state dict (our layout or an original one),
strictly, with two deliberate exceptions (each logged on the ``hrformer`` logger):

- a head that differs from the checkpoint's (other ``num_classes``/``num_keypoints``, another head
  type, or none) is not loaded; with the same head type only its last layer is dropped. Stage-4
  fusion weights for outputs a single-scale model does not compute are dropped too;
- ``in_chans != 3`` adapts the first convolution (summed for 1 channel, repeated and rescaled
  otherwise, as in timm);
- relative position bias tables of another window size (ImageNet window-7 weights into a window
  13 / 15 segmentation model) are resized, each head's (2K-1)x(2K-1) table as an image, bilinearly
  (``align_corners=False``), as the official segmentation code's loader does.

Everything else must match exactly, and nothing is loaded unless it does. The model is any
:class:`hrformer.HRFormer` (this package builds no model: see :mod:`hrformer.factory`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any, List, Mapping, Optional, Set, Tuple, Union

import torch
import torch.nn.functional as F

from .files import CheckpointLayoutError, PathLike, StateDict, read_checkpoint, unwrap_state_dict
from .hub import WeightsUnavailableError, download_hub_file, download_url, is_offline, saved_paths
from .layouts import convert_original, detect_layout, load_state_dict_strict
from .pretrained import PretrainedCfg

logger = logging.getLogger("hrformer")

FIRST_CONV = "stem.conv1.conv.weight"
_SEMANTICS = ("rel_pos_bias", "upsample_mode")


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
    logger.info("%s: %d relative position bias tables resized (bilinear) for window %s", source, len(keys),
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
        n_ckpt = sd[prefix + "weight"].shape[0] if prefix + "weight" in sd else 0
        logger.info("%s: the model's %s has %d outputs, the checkpoint's %d: %s not loaded (initialised)",
                    source, layer, model.head.num_outputs, n_ckpt, layer)
    else:
        dropped, keep_init = ckpt_head, own_head
        if ckpt_head and own_head:
            logger.info("%s: the checkpoint's head does not fit the %s head: head not loaded (initialised)",
                        source, model.head_type)
        elif ckpt_head:
            logger.info("%s: the model has no head: %d head tensors of the checkpoint not loaded",
                        source, len(ckpt_head))
        else:
            logger.info("%s: the checkpoint has no head: the %s head is initialised", source, model.head_type)
    return {k: v for k, v in sd.items() if k not in dropped}, keep_init


def _fit_model(model: torch.nn.Module, sd: StateDict, source: str) -> Tuple[StateDict, Set[str]]:
    own = model.state_dict()
    sd, keep_init = _fit_head(model, sd, own, source)
    sd = _fit_rel_pos_tables(sd, own, source)
    if not model.config.multiscale_output:
        last = len(model.stage4.hr_modules) - 1
        extra = [k for k in sd if k not in own and re.match(rf"stage4\.hr_modules\.{last}\.fusion\.paths\.[1-9]", k)]
        if extra:
            logger.info("%s: multi-scale checkpoint, single-scale model: %d stage-4 fusion tensors for the "
                        "stride 8-32 outputs not loaded", source, len(extra))
            sd = {k: v for k, v in sd.items() if k not in extra}
    if FIRST_CONV in sd and FIRST_CONV in own and sd[FIRST_CONV].shape[1] != own[FIRST_CONV].shape[1]:
        sd = {**sd, FIRST_CONV: adapt_input_conv(sd[FIRST_CONV], own[FIRST_CONV].shape[1])}
        logger.info("%s: first convolution adapted from 3 to %d input channels", source, own[FIRST_CONV].shape[1])
    return sd, keep_init


def load_weights(
    model: torch.nn.Module, checkpoint: Union[PathLike, Mapping[str, Any]], source: Optional[str] = None
) -> None:
    """Load a checkpoint file or (wrapped) state dict into ``model``: hrformer, official or mmpose key
    layout; strict except for the head and ``in_chans`` (module docstring)."""
    if isinstance(checkpoint, (str, os.PathLike)):
        source = source or os.fspath(checkpoint)
        checkpoint = read_checkpoint(checkpoint)
    sd = unwrap_state_dict(checkpoint)
    source = source or "state dict"
    layout = detect_layout(sd)
    if layout != "hrformer":
        sd, implied = convert_original(sd)
        differ = [f"{k}={implied[k]!r} (model: {getattr(model.config, k)!r})" for k in _SEMANTICS
                  if implied[k] != getattr(model.config, k)]
        if differ:
            logger.warning("%s: %s checkpoint, whose code computes %s; outputs will differ from the original. "
                           "hrformer.from_original builds the matching model.", source, layout, ", ".join(differ))
    sd, keep_init = _fit_model(model, sd, source)
    load_state_dict_strict(model, sd, source=source, allow_missing=keep_init)


def load_pretrained(
    model: torch.nn.Module,
    cfg: Optional[PretrainedCfg] = None,
    checkpoint_path: Optional[PathLike] = None,
    revision: Optional[str] = None,
    cache_dir: Optional[PathLike] = None,
) -> str:
    """Load weights into ``model`` from the first source that has them: ``checkpoint_path`` (a local
    file, or a directory written by ``save_pretrained``), the Hub (``cfg.hf_hub_id`` at ``revision``),
    the original release (``cfg.url``: downloaded, hash-checked, converted). Returns the source used.

    Raises :class:`~hrformer.hub.WeightsUnavailableError` listing every source tried and how to pass
    a local file instead.
    """
    if checkpoint_path is not None:
        path = str(saved_paths(checkpoint_path)[0]) if os.path.isdir(checkpoint_path) else os.fspath(checkpoint_path)
        load_weights(model, path)
        return path
    if cfg is None:
        raise ValueError("no pretrained config and no checkpoint_path: nothing to load")
    tried: List[str] = []
    if cfg.hf_hub_id:
        try:
            path = download_hub_file(cfg.hf_hub_id, cfg.hf_hub_filename, revision, cache_dir)
        except WeightsUnavailableError as e:
            tried.append(str(e))
        else:
            load_weights(model, path, source=f"{cfg.hf_hub_id}/{cfg.hf_hub_filename}")
            return path
    if cfg.url:
        try:
            path = download_url(cfg.url, cache_dir)
        except WeightsUnavailableError as e:
            tried.append(str(e))
        else:
            if tried:
                logger.info("%s: not on the Hub (%s); converting the original release %s", cfg.name, tried[0], path)
            load_weights(model, path)
            return path
    else:
        where = f" (released at {cfg.origin_url}: download it by hand)" if cfg.origin_url else ""
        tried.append(f"original release: no direct download URL{where}")
    offline = " The machine is offline (HF_HUB_OFFLINE=1)." if is_offline() else ""
    raise WeightsUnavailableError(
        f"Could not get the pretrained weights {cfg.name}.{offline}\n  tried:\n    - " + "\n    - ".join(tried)
        + f"\n  Pass a local file instead: create_model({cfg.name!r}, pretrained='path/to/checkpoint') "
        "(or checkpoint_path=...): .safetensors or .pth, in hrformer, official or mmpose layout."
    )

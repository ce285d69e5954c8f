"""Load checkpoints of the original implementations: official HRFormer (classification, pose and
segmentation code) and OpenMMLab mmpose, detected from their key names.

==================  ==============================  ==================================
layout              recognised by                   semantics it implies
==================  ==============================  ==================================
``official_cls``    ``attn.attn.q_proj``, no prefix relative position bias on, nearest
                                                    fusion upsampling
``official_pose``   ``attn.attn.q_proj`` under      bias never added (dead table),
                    ``backbone.``, no seg head      bilinear upsampling
                    keys
``official_seg``    ``attn.attn.q_proj`` under      as ``official_cls`` (window from
                    ``backbone.`` plus all of       the table size); OCR head
                    ``conv3x3.``, ``aux_head.``,    (``head="ocr"``, classes from
                    ``ocr_distri_head.``,           ``cls_head.weight``)
                    ``cls_head.``
``mmpose``          fused ``attn.attn.qkv``         bias on (when the table exists),
                                                    bilinear upsampling
``hrformer``        our own key names               as stored
==================  ==============================  ==================================

Released files may wrap the state dict (``state_dict``, ``model``) and prefix it with ``module.``
(DistributedDataParallel, as the official segmentation checkpoints): see :mod:`.files`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch

from ..config import ARCHS, HRFormerConfig
from ..errors import ConfigError
from .files import CheckpointLayoutError, StateDict, read_checkpoint, unwrap_state_dict

__all__ = ["LAYOUTS", "LAYOUT_SEMANTICS", "LayoutSemantics", "convert_original", "detect_layout",
           "infer_model_kwargs", "rename_original_key"]


@dataclass(frozen=True)
class LayoutSemantics:
    """How one original code path computes (the table in the module docstring): whether it adds the
    relative position bias (when the table exists), its fusion upsampling, and the channel order its
    data loader feeds (the official segmentation loader reads images with cv2: BGR)."""

    rel_pos_bias: bool
    upsample_mode: str
    channel_order: str = "RGB"

    def model_kwargs(self) -> Dict[str, Any]:
        """The ``create_model`` keyword arguments these semantics set."""
        return {"rel_pos_bias": self.rel_pos_bias, "upsample_mode": self.upsample_mode}


# The one source of truth of the original code paths' semantics (the registry's tags use it too).
LAYOUT_SEMANTICS: Dict[str, LayoutSemantics] = {
    "official_cls": LayoutSemantics(rel_pos_bias=True, upsample_mode="nearest"),
    "official_pose": LayoutSemantics(rel_pos_bias=False, upsample_mode="bilinear"),
    "official_seg": LayoutSemantics(rel_pos_bias=True, upsample_mode="nearest", channel_order="BGR"),
    "mmpose": LayoutSemantics(rel_pos_bias=True, upsample_mode="bilinear"),
}
LAYOUTS = (*LAYOUT_SEMANTICS, "hrformer")

# The official segmentation net's head modules (seg/lib/models/nets/hrt.py), all present in its files.
_SEG_HEAD_PREFIXES = ("conv3x3.", "aux_head.", "ocr_distri_head.", "cls_head.")


# --------------------------------------------------------------------------- detection
def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """One of :data:`LAYOUTS`, or :class:`CheckpointLayoutError` naming what is missing."""
    keys = list(sd)
    if any(k.startswith("stem.conv1.conv.") for k in keys):
        return "hrformer"
    seg_heads = [p for p in _SEG_HEAD_PREFIXES if any(k.startswith(p) for k in keys)]
    prefixed = any(k.startswith("backbone.") for k in keys)
    if any(".attn.attn.q_proj." in k for k in keys):
        if seg_heads:
            missing = [p + "*" for p in _SEG_HEAD_PREFIXES if p not in seg_heads]
            if missing or not prefixed:
                what = (f"lacks {', '.join(missing)}" if missing else "has its backbone keys without 'backbone.'")
                raise CheckpointLayoutError(
                    f"the state dict looks like an official segmentation (OCR) checkpoint (found "
                    f"{', '.join(p + '*' for p in seg_heads)}) but {what}; found e.g. {keys[:5]}"
                )
            return "official_seg"
        return "official_pose" if prefixed else "official_cls"
    if any(".attn.attn.qkv." in k for k in keys):
        return "mmpose"
    expected = ["conv1.weight", "stage2.0.branches.0.0.attn.attn.q_proj.weight (official)",
                "backbone.* + conv3x3.*, aux_head.*, ocr_distri_head.*, cls_head.* (official segmentation)",
                "stage2.0.branches.0.0.attn.attn.qkv.weight (mmpose)", "stem.conv1.conv.weight (hrformer)"]
    found = sorted({k.split(".")[0] + ".*" for k in keys})
    raise CheckpointLayoutError(
        "the state dict matches no known HRFormer layout: expected keys such as "
        + ", ".join(expected) + f"; found {len(keys)} keys under {', '.join(found[:12])}"
        + (" ..." if len(found) > 12 else "") + f", e.g. {keys[:5]}"
    )


# --------------------------------------------------------------------------- renaming
# Index -> name inside the original nn.Sequential containers: (conv, bn), a depth-wise separable
# (dw conv, dw bn, pw conv, pw bn), the FFN's named layers.
_CONV_BN = ("conv", "bn")
_SEPARABLE = ("dw.conv", "dw.bn", "pw.conv", "pw.bn")
_FFN = {"fc1": "fc1.conv", "norm1": "fc1.bn", "dw3x3": "dw.conv", "norm2": "dw.bn", "fc2": "fc2.conv",
        "norm3": "fc2.bn"}
_SEG_CBR = {"conv3x3": "bottleneck", "aux_head": "aux"}
_OCR_PART = {"f_pixel": "pixel", "f_object": "object", "f_down": "down", "f_up": "up"}
_BLOCK = r"stage(\d)\.(\d+)\.branches\.(\d+)\.(\d+)\."
_OCR = r"ocr_distri_head\.object_context_block\."


def _block(m: "re.Match[str]") -> str:
    return f"stage{m[1]}.hr_modules.{m[2]}.branches.{m[3]}.{m[4]}"


# The one rename table, original key (``backbone.`` stripped) -> ours, first match wins; a rule
# returning None drops the key; a key no rule matches is kept as is (reported as unexpected).
_RENAMES: Tuple[Tuple["re.Pattern[str]", Callable[["re.Match[str]"], Optional[str]]], ...] = tuple(
    (re.compile(pattern), rename) for pattern, rename in (
        # stem, stage 1, transitions
        (r"conv([12])\.(.+)", lambda m: f"stem.conv{m[1]}.conv.{m[2]}"),
        (r"bn([12])\.(.+)", lambda m: f"stem.conv{m[1]}.bn.{m[2]}"),
        (r"layer1\.(\d+)\.conv(\d)\.(.+)", lambda m: f"stage1.{m[1]}.conv{m[2]}.conv.{m[3]}"),
        (r"layer1\.(\d+)\.bn(\d)\.(.+)", lambda m: f"stage1.{m[1]}.conv{m[2]}.bn.{m[3]}"),
        (r"layer1\.(\d+)\.downsample\.([01])\.(.+)", lambda m: f"stage1.{m[1]}.downsample.{_CONV_BN[int(m[2])]}.{m[3]}"),
        (r"transition(\d)\.(\d+)\.(\d+)\.([01])\.(.+)",
         lambda m: f"stage{int(m[1]) + 1}.transition.branches.{m[2]}.{m[3]}.{_CONV_BN[int(m[4])]}.{m[5]}"),
        (r"transition(\d)\.(\d+)\.([01])\.(.+)",
         lambda m: f"stage{int(m[1]) + 1}.transition.branches.{m[2]}.0.{_CONV_BN[int(m[3])]}.{m[4]}"),
        # transformer blocks: attention (q/k/v merged into qkv afterwards), FFN, the rest as is
        (_BLOCK + r"attn\.attn\.relative_position_index", lambda m: None),
        (_BLOCK + r"attn\.attn\.relative_position_bias_table", lambda m: f"{_block(m)}.attn.relative_position_bias_table"),
        (_BLOCK + r"attn\.attn\.(?:out_proj|proj)\.(\w+)", lambda m: f"{_block(m)}.attn.proj.{m[5]}"),
        (_BLOCK + r"attn\.attn\.(qkv|q_proj|k_proj|v_proj)\.(\w+)", lambda m: f"{_block(m)}.attn.{m[5]}.{m[6]}"),
        (_BLOCK + r"(?:mlp|ffn)\.(" + "|".join(_FFN) + r")\.(\w+)", lambda m: f"{_block(m)}.ffn.{_FFN[m[5]]}.{m[6]}"),
        (_BLOCK + r"(.+)", lambda m: f"{_block(m)}.{m[5]}"),
        # fusion
        (r"stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.(\d+)\.([0-3])\.(.+)",
         lambda m: f"stage{m[1]}.hr_modules.{m[2]}.fusion.paths.{m[3]}.{m[4]}.{m[5]}.{_SEPARABLE[int(m[6])]}.{m[7]}"),
        (r"stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.([01])\.(.+)",
         lambda m: f"stage{m[1]}.hr_modules.{m[2]}.fusion.paths.{m[3]}.{m[4]}.{_CONV_BN[int(m[5])]}.{m[6]}"),
        # classification head
        (r"incre_modules\.(\d+)\.0\.conv(\d)\.(.+)", lambda m: f"head.incre.{m[1]}.conv{m[2]}.conv.{m[3]}"),
        (r"incre_modules\.(\d+)\.0\.bn(\d)\.(.+)", lambda m: f"head.incre.{m[1]}.conv{m[2]}.bn.{m[3]}"),
        (r"incre_modules\.(\d+)\.0\.downsample\.([01])\.(.+)",
         lambda m: f"head.incre.{m[1]}.downsample.{_CONV_BN[int(m[2])]}.{m[3]}"),
        (r"downsamp_modules\.(\d+)\.([0-3])\.(.+)", lambda m: f"head.downsamp.{m[1]}.{_SEPARABLE[int(m[2])]}.{m[3]}"),
        (r"final_layer\.([01])\.(.+)", lambda m: f"head.final.{_CONV_BN[int(m[1])]}.{m[2]}"),
        (r"classifier\.(.+)", lambda m: f"head.fc.{m[1]}"),
        # pose head
        (r"(?:keypoint_head|head)\.final_layer\.(.+)", lambda m: f"head.conv.{m[1]}"),
        # OCR head: nn.Sequential(conv, nn.Sequential(BN, ReLU), ...) containers
        (r"(conv3x3|aux_head)\.([01])\.(?:0\.)?(\w+)", lambda m: f"head.{_SEG_CBR[m[1]]}.{_CONV_BN[int(m[2])]}.{m[3]}"),
        (r"aux_head\.2\.(\w+)", lambda m: f"head.cls.aux.{m[1]}"),
        (r"cls_head\.(\w+)", lambda m: f"head.cls.main.{m[1]}"),
        (_OCR + r"(f_pixel|f_object)\.([0-3])\.(?:0\.)?(\w+)",
         lambda m: f"head.object_context.{_OCR_PART[m[1]]}.{int(m[2]) // 2}.{_CONV_BN[int(m[2]) % 2]}.{m[3]}"),
        (_OCR + r"(f_down|f_up)\.([01])\.(?:0\.)?(\w+)",
         lambda m: f"head.object_context.{_OCR_PART[m[1]]}.{_CONV_BN[int(m[2])]}.{m[3]}"),
        (r"ocr_distri_head\.conv_bn_dropout\.([01])\.(?:0\.)?(\w+)", lambda m: f"head.fuse.{_CONV_BN[int(m[1])]}.{m[2]}"),
    )
)


def rename_original_key(key: str) -> Optional[str]:
    """Map one original key (``backbone.`` stripped) to ours; ``None`` drops it."""
    for pattern, rename in _RENAMES:
        m = pattern.fullmatch(key)
        if m:
            return rename(m)
    return key


def _strip_backbone(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in sd.items()}


def _merge_qkv(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for k, v in sd.items():
        m = re.fullmatch(r"(.+\.attn)\.q_proj\.(\w+)", k)
        if m:
            base, p = m[1], m[2]
            parts = [(k, v), *((f"{base}.{n}.{p}", sd.get(f"{base}.{n}.{p}")) for n in ("k_proj", "v_proj"))]
            shapes = {name: tuple(t.shape) if t is not None else None for name, t in parts}
            if None in shapes.values() or len(set(shapes.values())) != 1 or v.dim() == 0:
                raise CheckpointLayoutError(f"query, key and value projections of {base} do not match: {shapes}")
            out[f"{base}.qkv.{p}"] = torch.cat([t for _, t in parts], 0)
        elif not re.fullmatch(r".+\.attn\.[kv]_proj\.\w+", k):
            out[k] = v
    return out


# --------------------------------------------------------------------------- architecture inference
def _count(keys: List[str], pattern: str) -> int:
    found = {int(m[1]) for k in keys for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0


def _tensor(sd: Mapping[str, torch.Tensor], key: str, dims: int) -> torch.Tensor:
    """``sd[key]`` with ``dims`` dimensions, each at least 1, or a :class:`CheckpointLayoutError`."""
    value = sd.get(key)
    if value is None:
        raise CheckpointLayoutError(
            f"cannot infer the architecture: missing {key} (only HRFormer transformer-block checkpoints with 4 "
            "branches are supported)")
    if value.dim() != dims or 0 in value.shape:
        raise CheckpointLayoutError(f"{key}: shape {tuple(value.shape)}, expected {dims} non-empty dimensions")
    return value


def infer_model_kwargs(sd: Mapping[str, torch.Tensor], layout: str) -> Dict[str, Any]:
    """``create_model`` keyword arguments (``name`` included) that fit an original-layout state dict
    (with ``backbone.`` stripped): the architecture read from the tensor shapes (``name`` the
    registered one of the same widths, plus the fields that differ from it), the head, the last
    stage's outputs and the layout's semantics (:data:`LAYOUT_SEMANTICS`)."""
    keys = list(sd)
    channels = tuple(int(_tensor(sd, f"stage4.0.branches.{b}.0.norm1.weight", 1).shape[0]) for b in range(4))
    modules = (1,) + tuple(_count(keys, rf"stage{s}\.(\d+)\.") for s in (2, 3, 4))
    blocks = _count(keys, r"stage2\.0\.branches\.0\.(\d+)\.")
    stage1_blocks = _count(keys, r"layer1\.(\d+)\.")
    ffn_key = "mlp" if layout != "mmpose" else "ffn"
    hidden = _tensor(sd, f"stage2.0.branches.0.0.{ffn_key}.fc1.weight", 4).shape[0]
    mlp_ratio = hidden / channels[0]
    ffn_dw = f"stage2.0.branches.0.0.{ffn_key}.dw3x3.weight" in sd
    stem_width = int(_tensor(sd, "conv1.weight", 4).shape[0])
    tables = [f"stage4.0.branches.{b}.0.attn.attn.relative_position_bias_table" for b in range(4)]
    has_table = all(t in sd for t in tables)
    arch = next((n for n, c in ARCHS.items() if c.channels == channels), None)
    if has_table:
        shapes = [tuple(_tensor(sd, t, 2).shape) for t in tables]
        heads = tuple(shape[1] for shape in shapes)
        side = math.isqrt(shapes[0][0])
        if side * side != shapes[0][0] or side % 2 == 0 or any(shape[0] != shapes[0][0] for shape in shapes):
            raise CheckpointLayoutError(
                f"relative position bias tables of shapes {shapes}: not (2K-1)**2 rows for one window size K")
        window = side // 2 + 1
    else:
        base = ARCHS[arch] if arch else None
        heads = base.heads if base else tuple(max(1, c // 32) for c in channels)
        window = 7
    try:
        config = HRFormerConfig(
            channels=channels, heads=heads, modules=modules, blocks=blocks, mlp_ratio=mlp_ratio, window_size=window,
            stem_width=stem_width, stage1_blocks=stage1_blocks, ffn_dw=ffn_dw,
        )
    except ConfigError as e:
        raise CheckpointLayoutError(f"the tensor shapes describe no valid HRFormer: {e}") from e
    base_config = ARCHS[arch] if arch else ARCHS["hrformer_t"]
    overrides = {k: v for k, v in config.to_dict().items() if base_config.to_dict()[k] != v}

    last = modules[3] - 1
    multiscale = any(k.startswith(f"stage4.{last}.fuse_layers.1.") for k in keys)
    kwargs: Dict[str, Any] = {"name": arch or "hrformer_t", **overrides}
    if "cls_head.weight" in sd:
        kwargs.update(head="ocr", num_classes=int(_tensor(sd, "cls_head.weight", 4).shape[0]))
    elif "classifier.weight" in sd:
        kwargs.update(head="classification", num_classes=int(_tensor(sd, "classifier.weight", 2).shape[0]))
    elif any(k.endswith("final_layer.weight") and "head" in k for k in keys):
        key = next(k for k in keys if k.endswith("final_layer.weight") and "head" in k)
        kwargs.update(head="pose", num_keypoints=int(_tensor(sd, key, 4).shape[0]))
    else:
        kwargs.update(head=None)
    semantics = LAYOUT_SEMANTICS[layout]
    kwargs.update(semantics.model_kwargs(), multiscale_output=multiscale)
    kwargs["rel_pos_bias"] = has_table and semantics.rel_pos_bias
    return kwargs


# --------------------------------------------------------------------------- public API
def convert_original(
    checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
) -> Tuple[StateDict, Dict[str, Any]]:
    """Original checkpoint (path or state dict, any known layout) -> (our state dict, ``create_model``
    keyword arguments including ``name``) such that ``create_model(**kwargs)`` loads it strictly.

    BatchNorm ``num_batches_tracked`` counters missing from the source are filled with zeros; the
    dead relative position tables of the official pose code and the position index buffers are dropped.
    """
    obj = read_checkpoint(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else checkpoint
    sd = unwrap_state_dict(obj)
    layout = detect_layout(sd)
    if layout == "hrformer":
        raise CheckpointLayoutError(
            "this state dict already uses hrformer's own key names; load it with model.load_state_dict "
            "or hrformer.from_pretrained"
        )
    sd = _strip_backbone(sd)
    kwargs = infer_model_kwargs(sd, layout)
    renamed: StateDict = {}
    for k, v in sd.items():
        new = rename_original_key(k)
        if new is not None:
            renamed[new] = v
    renamed = _merge_qkv(renamed)
    if not kwargs["rel_pos_bias"]:
        renamed = {k: v for k, v in renamed.items() if not k.endswith("relative_position_bias_table")}
    for k in [k for k in renamed if k.endswith(".running_var")]:
        counter = k[: -len("running_var")] + "num_batches_tracked"
        renamed.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return renamed, kwargs

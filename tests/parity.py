"""Shared test helpers (test modules import this one, never each other): small models, inputs and
outputs for the model tests; and the parity fixtures (tests/fixtures/parity, derived from
../shared/parity by scripts/make_parity_fixtures.py): deterministic weights, inputs, reference samples."""

from __future__ import annotations

import gzip
import json
import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from safetensors.torch import load_file

from hrformer.config import HRFORMER_T

# One module per stage, one block per branch: every building block of HRFormer-T, 3-4x cheaper.
SMALL = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)
# The heads the quick tests build (the OCR head has its own tests: tests/test_segmentation.py).
QUICK_HEADS = ["classification", "pose", "segmentation", None]
# A fixed 64x64 image.
X = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def outputs(model, x: torch.Tensor) -> List[torch.Tensor]:
    """``model(x)`` without autograd, as a list: a head's output or a backbone's maps."""
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, list) else [out]

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "parity"
SHARED_PARITY = Path(__file__).resolve().parents[2] / "shared" / "parity"
_ALL_VARIANTS = sorted(p.name[: -len(".json.gz")] for p in FIXTURES.glob("*.json.gz"))
# Segmentation (OCR) fixtures have their own outputs and tests (tests/test_segmentation.py).
SEG_VARIANTS = [v for v in _ALL_VARIANTS if v.startswith("official_seg_")]
VARIANTS = [v for v in _ALL_VARIANTS if v not in SEG_VARIANTS]
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32}


def deterministic_tensor(key: str, shape, dtype: torch.dtype) -> torch.Tensor:
    """The ``hrformer-parity-v1`` value of one floating-point entry: depends only on key and shape."""
    shape = tuple(int(s) for s in shape)
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))

    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    if key.endswith("running_var"):
        out = 0.5 + torch.rand(shape, generator=gen, dtype=torch.float32)
    elif key.endswith("running_mean"):
        out = 0.1 * randn()
    elif len(shape) == 1 and key.endswith(".weight"):
        out = 1.0 + 0.1 * randn()
    elif key.endswith(".bias"):
        out = 0.1 * randn()
    elif key.endswith("relative_position_bias_table"):
        out = randn()
    elif len(shape) >= 2:
        out = randn() * (1.0 / math.sqrt(math.prod(shape[1:])))
    else:
        out = 0.1 * randn()
    return out.to(dtype)


@lru_cache(maxsize=None)
def manifest(variant: str) -> dict:
    with gzip.open(FIXTURES / f"{variant}.json.gz", "rt") as f:
        return json.load(f)


def original_state_dict(variant: str, multiscale: bool = False) -> Dict[str, torch.Tensor]:
    """Weights in the original layout (floating-point entries only, as ``make_weights.py`` gives)."""
    m = manifest(variant)
    entries = m["keys"] + (m["keys_multiscale_extra"] if multiscale else [])
    return {name: deterministic_tensor(name, shape, _DTYPES[dtype])
            for name, shape, dtype in entries if _DTYPES[dtype].is_floating_point}


def parity_input(size: str) -> torch.Tensor:
    h, w = (int(s) for s in size.split("x"))
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(0))


@lru_cache(maxsize=None)
def samples(variant: str) -> Dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / f"{variant}.samples.safetensors"))


def reference_outputs(variant: str, size: str) -> List[str]:
    return sorted(n.split(".", 2)[2] for n in manifest(variant)["outputs"] if n.split(".")[1] == size)


def relative_error(variant: str, size: str, name: str, output: torch.Tensor) -> float:
    """max |ours - ref| / max |ref| over the stored sample positions of one output."""
    key = f"out.{size}.{name}"
    meta = manifest(variant)["outputs"][key]
    ref_shape = meta["shape"]
    output = output[: ref_shape[0]]
    assert list(output.shape) == ref_shape, f"{key}: shape {list(output.shape)} vs reference {ref_shape}"
    idx, val = samples(variant)[f"idx.{key}"], samples(variant)[f"val.{key}"]
    ours = output.reshape(-1)[idx]
    return float((ours - val).abs().max()) / meta["absmax"]


def run_outputs(model, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """All outputs the fixtures name, from one eval forward pass of ``model``."""
    prefuse: List[torch.Tensor] = []
    fusion = model.stage4.hr_modules[-1].fusion
    handle = fusion.register_forward_pre_hook(lambda mod, args: prefuse.extend(args[0]))
    try:
        with torch.no_grad():
            feats = model.forward_features(x)
            out = model.forward_head(feats) if model.head is not None else None
    finally:
        handle.remove()
    outs = {f"stage4.{i}": f for i, f in enumerate(feats)}
    outs.update({f"stage4_ms.{i}": f for i, f in enumerate(feats) if i > 0})
    outs.update({f"stage4_last_prefuse.{i}": p for i, p in enumerate(prefuse)})
    if out is not None:
        outs["logits" if model.head_type == "classification" else "heatmaps"] = out
    return outs


def split_name(variant: str) -> Tuple[str, str]:
    """``official_cls_hrt_tiny`` -> (``official_cls``, ``hrformer_t``)."""
    layout = "mmpose" if variant.startswith("mmpose") else "_".join(variant.split("_")[:2])
    return layout, "hrformer_" + variant.rsplit("_", 1)[1][0]


TOL = 1e-5  # relative to max|ref|, as in ../shared/parity/README.md

_SEG_ARCHS = {"small": "hrformer_s", "base": "hrformer_b", "base_win13": "hrformer_b_w13",
              "base_win15": "hrformer_b_w15"}


def seg_arch(variant: str) -> str:
    """``official_seg_hrt_base_win15_ocr_v2`` -> ``hrformer_b_w15``."""
    return _SEG_ARCHS[variant[len("official_seg_hrt_"): -len("_ocr_v2")]]


def run_seg_outputs(model, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The outputs the seg fixtures store, from one eval forward pass: ``stage4.{0..3}`` and the aux
    and main logits at input resolution on the ``[:, :, 1::4, 1::4]`` grid."""
    with torch.no_grad():
        feats = model.forward_features(x)
        logits, aux = model.forward_head(feats, output_size=x.shape[-2:], return_aux=True)
    outs = {f"stage4.{i}": f for i, f in enumerate(feats)}
    outs.update(aux_sub4=aux[:, :, 1::4, 1::4], logits_sub4=logits[:, :, 1::4, 1::4])
    return outs



def mmpose_0x_release(sd: dict, meta: Optional[dict] = None) -> dict:
    """An mmpose 0.x release file made from an mmpose 1.x state dict: ``keypoint_head.`` for ``head.``."""
    return {"meta": meta or {"epoch": 210},
            "state_dict": {("keypoint_head." + k[5:] if k.startswith("head.") else k): v for k, v in sd.items()}}


def assert_parity(model, variant: str, size: str) -> None:
    """Every stored output of the fixture (but the multi-scale ones) within TOL."""
    outs = run_outputs(model.eval(), parity_input(size))
    names = [n for n in reference_outputs(variant, size) if not n.startswith("stage4_ms.")]
    errors = {n: relative_error(variant, size, n, outs[n]) for n in names}
    assert names and all(e <= TOL for e in errors.values()), errors


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())

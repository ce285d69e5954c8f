"""Numerical parity with the original implementations (official HRFormer cls/pose code, mmpose)
through ``from_original``, on deterministic weights, for every stored output."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import hrformer
from hrformer.weights import convert_original, detect_layout
from parity import (
    SHARED_PARITY,
    TOL,
    VARIANTS,
    manifest,
    original_state_dict,
    parity_input,
    reference_outputs,
    relative_error,
    run_outputs,
    split_name,
)

# HRFormer-B runs the same code as T and S at 3x the cost: its fixtures are checked in the slow suite.
BY_SIZE = [pytest.param(v, marks=pytest.mark.slow) if v.endswith("base") else pytest.param(v) for v in VARIANTS]


def test_fixtures_present():
    assert len(VARIANTS) == 9


@pytest.mark.parametrize("variant", BY_SIZE)
def test_parity(variant):
    layout, arch = split_name(variant)
    sd = original_state_dict(variant)
    model = hrformer.from_original(sd)
    assert not model.training
    assert detect_layout(sd) == layout
    assert convert_original(sd)[1]["name"] == arch
    errors = {}
    for size in manifest(variant)["sizes"]:
        outs = run_outputs(model, parity_input(size))
        for name in reference_outputs(variant, size):
            if name.startswith("stage4_ms."):
                continue  # multi-scale outputs: separate model, below
            errors[f"{size}.{name}"] = relative_error(variant, size, name, outs[name])
    assert errors, "no outputs compared"
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"parity errors above {TOL}: {bad}"


@pytest.mark.parametrize("variant", [v for v in BY_SIZE if manifest(v.values[0])["keys_multiscale_extra"]])
def test_parity_multiscale_last_stage(variant):
    """mmpose built with extra.stage4.multiscale_output=True: all four fused maps."""
    model = hrformer.from_original(original_state_dict(variant, multiscale=True))
    assert model.config.multiscale_output and len(model.feature_info) == 4
    names = [n for n in reference_outputs(variant, "256x192") if n.startswith("stage4_ms.")]
    assert names
    outs = run_outputs(model, parity_input("256x192"))
    for name in names:
        assert relative_error(variant, "256x192", name, outs[name]) <= TOL, name


@pytest.mark.skipif(not (SHARED_PARITY / "make_weights.py").exists(), reason="../shared/parity not present")
def test_weights_match_shared_generator():
    spec = importlib.util.spec_from_file_location("make_weights", SHARED_PARITY / "make_weights.py")
    mw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mw)
    variant = "official_cls_hrt_tiny"
    ours = original_state_dict(variant)
    theirs = mw.state_dict_from_manifest(str(SHARED_PARITY / f"{variant}.keys.json"))
    assert ours.keys() == {k for k, v in theirs.items() if v.is_floating_point()}
    for k, v in ours.items():
        assert torch.equal(v, theirs[k]), k


@pytest.mark.parametrize("kernels_on", [True, False], ids=["fast-path-on", "fast-path-off"])
@pytest.mark.parametrize("variant", BY_SIZE)
def test_parity_of_the_fused_model(variant, kernels_on):
    """The inference fast path (BatchNorm folded, fused modules) with its private kernels on and off:
    every stored output of the smaller fixture size."""
    previous = hrformer.fast.fast_path_enabled()
    hrformer.set_fast_path(kernels_on)
    try:
        model = hrformer.from_original(original_state_dict(variant)).fuse_for_inference()
        size = min(manifest(variant)["sizes"], key=lambda s: math.prod(map(int, s.split("x"))))
        outs = run_outputs(model, parity_input(size))
        errors = {name: relative_error(variant, size, name, outs[name])
                  for name in reference_outputs(variant, size) if not name.startswith("stage4_ms.")}
    finally:
        hrformer.set_fast_path(previous)
    assert errors and all(e <= TOL for e in errors.values()), errors

"""Parameter counts and multiply-accumulates equal the original code's exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hrformer
from hrformer.profiling import count_params, paper_pose_gflops, profile

FIXTURE = Path(__file__).parent / "fixtures" / "reference.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hrformer_reference.json"
REF = json.loads(FIXTURE.read_text())
ARCHS = ["hrformer_t", "hrformer_s", "hrformer_b"]
# Profiling takes seconds per case: HRFormer-T in the default suite, S and B in the slow one.
PROFILED_ARCHS = ["hrformer_t"] + [pytest.param(a, marks=pytest.mark.slow) for a in ("hrformer_s", "hrformer_b")]

MODEL_KINDS = {
    "classifier_with_imagenet_head": {},
    "backbone_4_fused_outputs": {"head": None},
    "pose_model_single_output_plus_1x1_head_17": {"head": "pose"},
    "pose_backbone_single_output": {"head": None, "multiscale_output": False},
}


@pytest.mark.parametrize("kind", list(MODEL_KINDS))
@pytest.mark.parametrize("arch", ARCHS)
def test_params_exact(arch, kind):
    model = hrformer.create_model(arch, **MODEL_KINDS[kind])
    assert count_params(model) == REF["params_exact"][kind][arch]


@pytest.mark.parametrize("arch", PROFILED_ARCHS)
def test_classifier_macs_exact_with_breakdown(arch):
    p = profile(hrformer.create_model(arch), (224, 224))
    assert abs(p.macs / REF["macs_exact"]["classifier_224x224"][arch] - 1) < 1e-3
    ref_ops = REF["macs_exact"]["classifier_224x224_by_op"][arch]
    assert p.macs_by_op["conv"] == ref_ops["conv"]
    assert p.macs_by_op["linear"] == ref_ops["linear"]
    assert p.macs_by_op["attention"] == ref_ops["attn_matmul"]


@pytest.mark.parametrize("size", ["256x192", "384x288"])
@pytest.mark.parametrize("arch", PROFILED_ARCHS)
def test_pose_macs_exact(arch, size):
    expected = REF["macs_exact"][f"pose_{size}"].get(arch)
    if expected is None:
        pytest.skip(f"no reference for {arch} at {size}")
    h, w = (int(s) for s in size.split("x"))
    for rel_pos_bias in (True, False):  # the official pose code's (bias off) and mmpose's (bias on)
        model = hrformer.create_model(arch, head="pose", rel_pos_bias=rel_pos_bias)
        assert abs(profile(model, (h, w)).macs / expected - 1) < 1e-3


@pytest.mark.parametrize("size", ["256x192", "384x288"])
@pytest.mark.parametrize("arch", PROFILED_ARCHS)
def test_paper_pose_gflops_within_2_percent(arch, size):
    published = REF["published_gflops"][f"pose_{size}"].get(arch)
    if published is None:
        pytest.skip(f"the paper gives no number for {arch} at {size}")
    h, w = (int(s) for s in size.split("x"))
    ours = paper_pose_gflops(hrformer.create_model(arch, head="pose"), (h, w))
    assert abs(ours / published - 1) < 0.02


def test_profile_counts_attention_without_bias_or_mask():
    """The CPU flash kernel (no float mask) is counted too."""
    with_bias = profile(hrformer.create_model("hrformer_t", head="pose"), (64, 48))
    without = profile(hrformer.create_model("hrformer_t", head="pose", rel_pos_bias=False), (64, 48))
    assert without.macs_by_op["attention"] == with_bias.macs_by_op["attention"] > 0


def test_profile_accepts_chw_and_rejects_bad_sizes():
    model = hrformer.create_model("hrformer_t", in_chans=1, head=None)
    assert profile(model, (1, 64, 64)).macs == profile(model, 64).macs
    with pytest.raises(ValueError):
        profile(model, (1, 2, 64, 64))


@pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")
def test_fixture_copy_matches_shared_reference():
    shared = json.loads(SHARED.read_text())
    for section in ("params_exact", "macs_exact"):
        for key, value in REF[section].items():
            assert shared[section][key] == value

"""``hrformer info``: the Table 2 configurations and measured numbers next to the paper's."""

from __future__ import annotations

import subprocess
import sys

from hrformer.cli import main


def test_info_default_prints_table2_and_measured_vs_published(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "(18, 36, 72, 144)" in out and "(78, 156, 312, 624)" in out and "(2, 4, 8, 16)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("hrformer_")}
    # measured classifier params / GMACs, then the published numbers, in the second table
    b = [r for r in out.splitlines() if r.startswith("hrformer_b ")][-1].split()
    assert b[1:5] == ["50.320", "50.3", "13.308", "13.71"]
    assert b[7] == "11.999" and b[8] == "12.2"
    assert "hrformer_t" in rows and "hrformer_s" in rows


def test_info_named_model_at_input_size(capsys):
    assert main(["info", "hrformer_t", "--head", "pose", "--input-size", "64", "48"]) == 0
    out = capsys.readouterr().out
    assert "hrformer_t" in out and "64x48" in out and "pose" in out


def test_info_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "hrformer_x"]) == 2
    assert "Unknown model 'hrformer_x'" in capsys.readouterr().err


# ---------------------------------------------------------------- constants, speed, version, imports
import pytest  # noqa: E402

import hrformer  # noqa: E402
from hrformer.profiling import count_params, paper_pose_gflops, profile  # noqa: E402
from hrformer.published import MEASURED  # noqa: E402

# Measured on the original code (../shared/reference/hrformer_reference.json: params_exact,
# macs_exact), copied here: our constants must equal them.
ORIGINAL = {
    "hrformer_t": {"cls_params": 8035820, "pose_params": 2524759, "cls_macs_224": 1708032196},
    "hrformer_s": {"cls_params": 13544882, "pose_params": 7746779, "cls_macs_224": 3364326080},
    "hrformer_b": {"cls_params": 50320098, "pose_params": 43211777, "cls_macs_224": 13308176164},
}


def test_info_constants_equal_the_original_codes_counts():
    for name, ref in ORIGINAL.items():
        assert {k: MEASURED[name][k] for k in ref} == ref


@pytest.mark.parametrize("name", [
    "hrformer_t",
    pytest.param("hrformer_s", marks=pytest.mark.slow),
    pytest.param("hrformer_b", marks=pytest.mark.slow),
])
def test_info_constants_are_what_profiling_measures(name):
    cls, pose = hrformer.create_model(name), hrformer.create_model(name, head="pose")
    measured = {
        "cls_params": count_params(cls), "cls_macs_224": profile(cls, (224, 224)).macs,
        "pose_params": count_params(pose),
        "pose_paper_macs_256x192": round(paper_pose_gflops(pose, (256, 192)) * 1e9),
    }
    if name != "hrformer_t":  # the larger input only in the slow suite
        measured["pose_paper_macs_384x288"] = round(paper_pose_gflops(pose, (384, 288)) * 1e9)
    assert {k: MEASURED[name][k] for k in measured} == measured


@pytest.mark.slow
def test_info_constant_t_pose_384x288():
    pose = hrformer.create_model("hrformer_t", head="pose")
    assert MEASURED["hrformer_t"]["pose_paper_macs_384x288"] == round(paper_pose_gflops(pose, (384, 288)) * 1e9)


def test_info_without_names_profiles_and_builds_nothing(monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("hrformer info must print constants")

    monkeypatch.setattr("hrformer.cli.info.profile", forbidden)
    monkeypatch.setattr("hrformer.cli.info.create_model", forbidden)
    assert main([]) == 0
    assert "13.308" in capsys.readouterr().out


def test_info_tag_uses_the_tags_head_and_input_size(monkeypatch, capsys):
    seen = []

    def fake_profile(model, size):  # what would be profiled, without profiling it
        seen.append((model.head_type, size))
        return hrformer.Profile(params=1, macs=1, macs_by_op={"conv": 1, "linear": 0, "attention": 0})

    monkeypatch.setattr("hrformer.cli.info.profile", fake_profile)
    assert main(["info", "hrformer_s.coco_384x288"]) == 0
    assert main(["info", "hrformer_t.in1k", "--head", "pose"]) == 0  # head given: its usual input size
    assert seen == [("pose", (384, 288)), ("pose", (256, 192))]
    assert "384x288" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"hrformer {hrformer.__version__}"


def test_import_does_not_import_huggingface_hub_nor_onnx():
    code = "import sys, hrformer; print(sorted(m for m in ('huggingface_hub', 'onnx', 'onnxruntime') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

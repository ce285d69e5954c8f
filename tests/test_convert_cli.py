"""``hrformer convert`` turns original checkpoints into our files, which load strictly and reproduce
the parity fixtures; ``hrformer list`` prints the registries."""

from __future__ import annotations

import json

import pytest
import torch

import hrformer
from hrformer.cli import main
from parity import assert_parity, mmpose_0x_release, original_state_dict, same_tensors, split_name

# variant -> (the released file's wrapping, the smaller fixture size)
FILES = {
    "mmpose_pose_hrformer_tiny": (mmpose_0x_release, "224x160"),
    "official_pose_hrt_tiny": (lambda sd: {"state_dict": sd}, "200x152"),
    "official_cls_hrt_tiny": (lambda sd: {"model": sd}, "200x152"),
}


@pytest.mark.parametrize("variant", FILES)
def test_convert_reproduces_the_fixture(variant, tmp_path, capsys):
    wrap, size = FILES[variant]
    src = tmp_path / "original.pth"
    torch.save(wrap(original_state_dict(variant)), src)

    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out
    assert f"({split_name(variant)[0]} layout" in report and "hrformer_t (channels 18/36/72/144)" in report
    assert "strict reload, all tensors identical" in report

    config = json.loads((tmp_path / "out" / "config.json").read_text())
    model = hrformer.create_model(config["architecture"], **config["model_kwargs"], **config["config"])
    hrformer.load_weights(model, tmp_path / "out" / "model.safetensors")  # strict, our layout
    assert_parity(model, variant, size)


def test_convert_to_a_safetensors_path_writes_config_beside_it(tmp_path, capsys):
    src, dst = tmp_path / "original.pth", tmp_path / "out" / "hrformer_t_pose.safetensors"
    torch.save(mmpose_0x_release(original_state_dict("mmpose_pose_hrformer_tiny")), src)
    assert main(["convert", str(src), str(dst)]) == 0
    assert f"wrote         {dst} (" in capsys.readouterr().out
    assert sorted(p.name for p in dst.parent.iterdir()) == ["config.json", dst.name]
    assert same_tensors(hrformer.from_original(src).state_dict(), hrformer.from_pretrained(dst).state_dict())


def test_convert_arch_override_and_errors(tmp_path, capsys):
    src = tmp_path / "original.pth"
    torch.save(original_state_dict("official_cls_hrt_tiny"), src)
    assert main(["convert", str(src), str(tmp_path / "out"), "--arch", "hrformer_s"]) == 2
    err = capsys.readouterr().err  # one line naming the layout and the model asked for
    assert err.count("\n") == 1 and err.startswith("error: ") and "official_cls layout" in err and "hrformer_s" in err
    assert main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_list_prints_both_registries(capsys):
    assert main(["list"]) == 0
    assert "hrformer_b_hrnet" in capsys.readouterr().out
    assert main(["list", "--pretrained", "hrformer_s.coco_[0-9]*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "head", "input", "reported"]
    row = next(line for line in out if line.startswith("hrformer_s.coco_256x192 "))
    assert row.split() == ["hrformer_s.coco_256x192", "pose", "256x192", "coco_val2017_ap", "73.8", "mmpose,", "download",
                           "apache-2.0", "hrformer/hrformer_s.coco_256x192"]
    assert len(out) == 2 + 4


def _without(state, prefix):
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _replaced(state, suffix, value):
    key = next(k for k in state if k.endswith(suffix))
    return {**state, key: value(state[key])}


# Malformed original checkpoints (official classification layout): each once raised a KeyError,
# ZeroDivisionError, IndexError, RuntimeError or AttributeError from the architecture inference or
# the key conversion.
MALFORMED = {
    "no stem": lambda sd: _without(sd, "conv1."),
    "empty stage-4 norm": lambda sd: _replaced(sd, "stage4.0.branches.0.0.norm1.weight", lambda t: t[:0]),
    "scalar stem": lambda sd: _replaced(sd, "conv1.weight", lambda t: torch.tensor(1.0)),
    "1-element attention weight": lambda sd: _replaced(sd, "attn.attn.k_proj.weight", lambda t: torch.zeros(1)),
    "stage-4 branch with its norm only": lambda sd: {
        k: v for k, v in sd.items() if not k.startswith("stage4.0.branches.0.") or ".norm1." in k},
}


@pytest.fixture(scope="module")
def official_cls():
    return original_state_dict("official_cls_hrt_tiny")


@pytest.mark.parametrize("malformation", list(MALFORMED))
def test_malformed_original_checkpoints_are_one_line_errors(malformation, official_cls, tmp_path, capsys):
    src = tmp_path / "broken.pth"
    torch.save(MALFORMED[malformation](official_cls), src)
    commands = [["convert", src, tmp_path / "out"]]
    if malformation == "no stem":  # export reads checkpoints through the same reader: one case suffices
        commands.append(["export", src, tmp_path / "x.onnx", "--no-verify"])
    for argv in commands:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "broken.pth" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pth"]  # nothing written


def test_convert_makes_a_saved_model_of_an_hrformer_layout_state_dict(tmp_path, capsys):
    model = hrformer.create_model("hrformer_t", head="pose", num_keypoints=5).eval()
    torch.save(model.state_dict(), tmp_path / "state.pth")
    assert main(["convert", str(tmp_path / "state.pth"), str(tmp_path / "saved"), "--arch", "hrformer_t"]) == 0
    assert "all tensors identical" in capsys.readouterr().out
    reloaded = hrformer.from_pretrained(tmp_path / "saved")
    assert reloaded.num_keypoints == 5 and reloaded.config == model.config
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)

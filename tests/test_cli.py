"""The command line: one resolver for every command, one error policy (a user's mistake is one
``error:`` line and exit status 2, checked before any model loads), strict JSON, pose boxes from a
file, the segmentation legend. Tiny untrained models saved in a temporary directory, commands run
in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import hrformer
import hrformer.segmentation
from hrformer.cli import main
from hrformer.cli import resolve
from hrformer.config import HRFORMER_T
from cli_helpers import assert_user_error, no_model_loading, run_cli  # noqa: F401 (fixture)

Image = pytest.importorskip("PIL.Image")

TINY = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)
H, W = 64, 48
COLOR = (120, 90, 60)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny saved models (pose, 5-class OCR, cityscapes-named OCR), state dicts without config.json
    and a 48x64 picture."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    pose = hrformer.HRFormer(TINY, head="pose").eval()
    hrformer.save_pretrained(pose, root / "pose")
    ocr = hrformer.HRFormer(TINY, head="ocr", num_classes=5).eval()
    hrformer.save_pretrained(ocr, root / "ocr")
    named = hrformer.HRFormer(TINY, head="ocr", num_classes=19).eval()
    named.pretrained_cfg = hrformer.get_pretrained_cfg("hrformer_s", "cityscapes_ocr")
    hrformer.save_pretrained(named, root / "cityscapes")
    nan = hrformer.HRFormer(TINY, head="pose").eval()
    with torch.no_grad():
        nan.head.conv.bias[3] = float("nan")  # keypoint 3: NaN heatmap, NaN score
    hrformer.save_pretrained(nan, root / "nan")
    torch.save(pose.state_dict(), root / "pose_state.pth")  # hrformer layout, no config.json
    Image.new("RGB", (W, H), COLOR).save(root / "img.png")
    (root / "garbage.png").write_bytes(b"not an image")
    (root / "garbage.pth").write_bytes(b"not a checkpoint")
    return root


# --------------------------------------------------------------------------- errors before any work
def test_mistakes_are_refused_before_any_model_loads(files, tmp_path, capsys, no_model_loading):
    img, pose = files / "img.png", files / "pose"
    cases = [
        (["pose", tmp_path / "missing.png", "--model", pose], "IMAGE", "no such file"),
        (["pose", img, "--model", pose, "--out", tmp_path / "no" / "dir" / "x.png"], "--out", "does not exist"),
        (["pose", img, "--model", pose, "--out", tmp_path / "x.txt"], "unknown extension '.txt'"),
        (["pose", img, "--model", pose, "--out", tmp_path], "is a directory"),
        (["pose", img, "--model", pose, "--json", tmp_path / "no" / "r.json"], "--json", "does not exist"),
        (["pose", img, "--model", pose, "--device", "nonsense"], "--device 'nonsense'"),
        (["pose", img, "--model", pose, "--boxes", tmp_path / "missing.json"], "--boxes", "no such file"),
        (["pose", img, "--model", pose, "--boxes", files / "garbage.png"], "not a readable list of boxes"),
        (["pose", img, "--model", pose, "--box", 0, 0, 9, 9, "--boxes", tmp_path / "b.json"], "not both"),
        (["segment", img, "--model", pose, "--out", tmp_path / "s.png", "--alpha", 5], "--alpha 5.0", "[0, 1]"),
        (["segment", img, "--model", pose, "--alpha", -0.1], "--alpha -0.1"),
        (["segment", img, "--model", pose, "--labels", tmp_path / "l.jpg"], "--labels", "'.jpg'"),
        (["segment", img, "--model", pose, "--stride", 8, 8], "--stride needs --crop-size"),
        (["export", pose, tmp_path / "x.onnx", "--opset", 5], "--opset 5", "14-20"),
        (["export", pose, tmp_path / "x.txt"], "unknown extension"),
        (["export", pose, tmp_path / "no" / "x.onnx"], "does not exist"),
        (["convert", tmp_path / "missing.pth", tmp_path / "out"], "SRC", "no such file"),
        (["convert", files / "pose_state.pth", tmp_path / "out.pth"], "a .safetensors path"),
    ]
    if not torch.cuda.is_available():
        cases.append((["pose", img, "--model", pose, "--device", "cuda"], "--device cuda", "CUDA is not available"))
    (tmp_path / "b.json").write_text("[[0, 0, 9, 9]]")
    for argv, *fragments in cases:
        assert_user_error(capsys, argv, *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, fragment", [
    ([[0, 0, 9, 9], [0, 0, 9, 9, 0.5]], "a score with every box or with none"),
    ([[0, 0, 9]], "box 0: expected 4 numbers"),
    ([{"box": [0, 0, 9, 9]}], "needs a 'bbox'"),
    ([[0, 0, "9", 9]], "not a finite number"),
    ({"a": 1}, "expected a list of boxes"),
])
def test_bad_boxes_files(files, tmp_path, capsys, no_model_loading, content, fragment):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(content))
    assert_user_error(capsys, ["pose", files / "img.png", "--model", files / "pose", "--boxes", path], fragment)


def test_argparse_mistakes_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pose", "img.png"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "--model" in err


def test_missing_optional_package_names_its_extra(files, tmp_path, capsys, monkeypatch, no_model_loading):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert_user_error(capsys, ["pose", files / "img.png", "--model", files / "pose", "--out", tmp_path / "p.png"],
                      "'PIL'", "pip install 'hrformer[draw]'")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert_user_error(capsys, ["export", files / "pose", tmp_path / "x.onnx"], "pip install onnxruntime",
                      "--no-verify")


# --------------------------------------------------------------------------- errors about models and files
def test_model_and_file_mistakes(files, tmp_path, capsys):
    img = files / "img.png"
    cases = [
        (["export", "/missing.pth", tmp_path / "x.onnx"], "/missing.pth: no such file"),
        (["export", "hrformer_x", tmp_path / "x.onnx"], "Unknown model 'hrformer_x'"),
        (["info", tmp_path / "missing_dir/"], "no such file"),
        (["pose", img, "--model", "hrformer_t"], "a bare architecture has no pose weights"),
        (["pose", img, "--model", "hrformer_t", "--weights", tmp_path / "x.pth"], "--weights", "no such file"),
        (["pose", img, "--model", files / "ocr"], "pose needs a model with a", "'ocr' head"),
        (["segment", img, "--model", files / "pose"], "segmentation needs", "'pose' head"),
        (["pose", img, "--model", files / "pose_state.pth"], "layout", "--model hrformer_t --weights"),
        (["pose", img, "--model", "hrformer_t", "--weights", files / "pose_state.pth"], "missing keys"),
        (["pose", img, "--model", "hrformer_s", "--weights", files / "pose"], "channels 18/36/72/144", "not hrformer_s"),
        (["pose", img, "--model", files / "garbage.pth"], "garbage.pth", "corrupt"),
        (["pose", files / "garbage.png", "--model", files / "pose"], "garbage.png", "not an image file"),
        (["pose", img, "--model", files / "pose", "--box", 10, 10, 5, 5], "box"),
        (["segment", img, "--model", files / "ocr", "--crop-size", 32, 32, "--stride", 40, 40], "stride"),
        (["convert", files / "pose_state.pth", tmp_path / "out"], "does not name its architecture", "--arch"),
        (["convert", files / "pose", tmp_path / "out"], "already a saved model"),
    ]
    for argv, *fragments in cases:
        assert_user_error(capsys, argv, *fragments)


# --------------------------------------------------------------------------- the resolver
def test_resolver_reads_every_kind_of_source(files, tmp_path, monkeypatch):
    from parity import mmpose_0x_release, original_state_dict

    saved = resolve.load_model(str(files / "pose"), task="pose")
    assert saved.trained and saved.model.config.modules == (1, 1, 1, 1) and not saved.model.training
    by_file = resolve.load_model(str(files / "pose" / "model.safetensors"))
    assert by_file.model.head_type == "pose"
    # a state dict in our layout: the architecture from the name, the head from the tensors
    full = hrformer.create_model("hrformer_t", head="pose", num_keypoints=5)
    torch.save(full.state_dict(), tmp_path / "t5.pth")
    named = resolve.load_model("hrformer_t", str(tmp_path / "t5.pth"), task="pose")
    assert named.model.num_keypoints == 5 and not named.model.training
    assert torch.equal(named.model.head.conv.weight, full.head.conv.weight)
    # ... and a file without a head is refused for pose, not given a random one
    torch.save({k: v for k, v in full.state_dict().items() if not k.startswith("head.")}, tmp_path / "backbone.pth")
    with pytest.raises(resolve.UserError, match="no head"):
        resolve.load_model("hrformer_t", str(tmp_path / "backbone.pth"), task="pose")
    # an original checkpoint: architecture, head and semantics from the file
    torch.save(mmpose_0x_release(original_state_dict("mmpose_pose_hrformer_tiny")), tmp_path / "mmpose.pth")
    original = resolve.load_model(str(tmp_path / "mmpose.pth"), task="pose")
    assert "mmpose checkpoint" in original.description and original.model.head_type == "pose"
    # a bare architecture: untrained; a tag and hf-hub: the published / pushed weights
    bare = resolve.load_model("hrformer_t")
    assert not bare.trained and "untrained" in bare.description
    # (offline, nothing cached: asking for them is an error naming what was tried, not a random model)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(resolve.UserError, match="hrformer_s.coco_256x192.*download.openmmlab.com"):
        resolve.load_model("hrformer_s.coco_256x192", task="pose")
    with pytest.raises(resolve.UserError, match="org/name"):
        resolve.load_model("hf-hub:org/name", task="pose")


def test_export_of_a_bare_architecture_warns(files, tmp_path, capsys, monkeypatch):
    def fake_export(model, path, **kwargs):  # what export would write, without tracing
        open(path, "wb").close()
        return {"path": str(path), "input_size": (H, W), "dynamic": True, "dynamic_batch": True,
                "opset": kwargs["opset"], "outputs": ["output"]}

    monkeypatch.setattr("hrformer.export.export_onnx", fake_export)
    status, _, err = run_cli(capsys, "export", "hrformer_t", tmp_path / "t.onnx", "--no-verify")
    assert status == 0 and "warning: hrformer_t is a bare architecture" in err and "untrained" in err
    status, out, err = run_cli(capsys, "export", files / "pose", tmp_path / "p.onnx", "--no-verify")
    assert status == 0 and err == "" and "(saved" in out


# --------------------------------------------------------------------------- pose and segment
def test_pose_boxes_file_scores_drawn_and_strict_json(files, tmp_path, capsys):
    boxes = tmp_path / "det.json"
    boxes.write_text(json.dumps([{"bbox": [4, 6, 30, 40], "score": 0.9, "category_id": 1}]))  # COCO xywh
    out, report = tmp_path / "pose.png", tmp_path / "pose.json"
    status, _, err = run_cli(capsys, "pose", files / "img.png", "--model", files / "nan", "--boxes", boxes,
                             "--bbox-format", "xywh", "--input-size", H, W, "--out", out, "--json", report,
                             "--score-threshold", 1e9, "--no-flip")
    assert status == 0, err

    def refuse(constant):
        raise AssertionError(f"bare {constant} in the JSON")

    result = json.loads(report.read_text(), parse_constant=refuse)
    (instance,) = result["instances"]
    assert instance["box"] == [4.0, 6.0, 34.0, 46.0] and instance["box_score"] == pytest.approx(0.9)
    assert instance["keypoint_scores"][3] is None  # NaN written as null
    assert len(result["keypoint_names"]) == 17
    with Image.open(out) as picture:
        assert picture.size == (W, H)
        assert picture.getpixel((4, 25)) != COLOR and picture.getpixel((20, 25)) == COLOR  # box edge, inside


def test_pose_without_boxes_takes_the_whole_image(files, capsys):
    status, out, err = run_cli(capsys, "pose", files / "img.png", "--model", files / "pose", "--input-size", H, W,
                               "--no-flip")
    assert status == 0, err
    (instance,) = json.loads(out)["instances"]
    x1, y1, x2, y2 = instance["box"]
    assert (x1, y1) == (0, 0) and x2 >= W - 1 and y2 >= H - 1


def test_segment_legend_and_outputs(files, tmp_path, capsys):
    out, labels, report = tmp_path / "seg.png", tmp_path / "labels.png", tmp_path / "seg.json"
    status, text, err = run_cli(capsys, "segment", files / "img.png", "--model", files / "ocr" / "model.safetensors",
                                "--out", out, "--labels", labels, "--json", report, "--alpha", 1)
    assert status == 0, err
    model = hrformer.from_pretrained(files / "ocr")
    expected = hrformer.segmentation.predict(model, str(files / "img.png")).labels
    with Image.open(labels) as label_map:
        assert label_map.size == (W, H) and label_map.mode == "L"
        got = torch.frombuffer(bytearray(label_map.tobytes()), dtype=torch.uint8).long().view(H, W)
    assert torch.equal(got, expected)
    classes = json.loads(report.read_text())["classes"]
    assert {c["index"] for c in classes} == set(expected.unique().tolist())
    assert sum(c["fraction"] for c in classes) == pytest.approx(1.0)
    assert all(f"class {c['index']}" in text for c in classes) and "legend" in text
    with Image.open(out) as picture:  # alpha 1: the colours alone
        assert picture.getpixel((0, 0)) == tuple(classes[0]["color"] if expected[0, 0] == classes[0]["index"] else
                                                 next(c["color"] for c in classes if c["index"] == expected[0, 0]))


def test_segment_legend_uses_the_datasets_class_names(files, capsys):
    status, text, err = run_cli(capsys, "segment", files / "img.png", "--model", files / "cityscapes",
                                "--crop-size", 32, 32)
    assert status == 0, err
    names = set(hrformer.get_pretrained_cfg("hrformer_s", "cityscapes_ocr").class_names)
    shown = [line.split("  ")[1].strip() for line in text.splitlines() if line.startswith("  ")]
    assert shown and set(shown) <= names


def test_python_dash_m_hrformer_version():
    result = subprocess.run([sys.executable, "-m", "hrformer", "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"hrformer {hrformer.__version__}"

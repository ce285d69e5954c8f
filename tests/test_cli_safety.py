"""The command line never loses data (no output over an input, atomic writes with the umask's mode),
turns user mistakes into one ``error:`` line (image limits, odd files, odd devices, out of memory, a
closed pipe), speaks in its own flags, and reads detector files as COCO writes them. Tiny untrained
models saved in a temporary directory, commands run in-process."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

import hrformer
from hrformer.cli import main
from hrformer.cli.errors import command_advice
from hrformer.cli.files import atomic_output, float32_precision, to_json
from hrformer.cli.pose import read_boxes
from hrformer.config import HRFORMER_T
from cli_helpers import assert_user_error, no_model_loading, run_cli  # noqa: F401 (fixture)

Image = pytest.importorskip("PIL.Image")

TINY = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)
H, W = 64, 48

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny saved models (pose, classifier, 5-class OCR) and a 48x64 PNG and JPEG of noise."""
    root = tmp_path_factory.mktemp("safety")
    torch.manual_seed(0)
    pose = hrformer.HRFormer(TINY, head="pose").eval()
    hrformer.save_pretrained(pose, root / "pose")
    hrformer.save_pretrained(hrformer.HRFormer(TINY, head="classification", num_classes=10).eval(), root / "cls")
    hrformer.save_pretrained(hrformer.HRFormer(TINY, head="ocr", num_classes=5).eval(), root / "ocr")
    noise = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    picture = Image.frombytes("RGB", (W, H), bytes(noise.flatten().tolist()))
    picture.save(root / "img.png")
    picture.save(root / "img.jpg", quality=90)  # noise: most of the file is image data
    return root


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".hrformer-")]


# --------------------------------------------------------------------------- no output over an input
def test_no_output_may_be_an_input_or_another_output(files, tmp_path, capsys, monkeypatch, no_model_loading):
    img, pose, ocr = tmp_path / "photo.png", files / "pose", files / "ocr"
    img.write_bytes((files / "img.png").read_bytes())
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[[0, 0, 9, 9]]")
    (tmp_path / "link.png").symlink_to(img)
    os.link(img, tmp_path / "hard.png")
    monkeypatch.chdir(tmp_path)
    cases = [
        (["pose", img, "--model", pose, "--out", img], "--out", "is IMAGE"),
        (["pose", img, "--model", pose, "--out", "./photo.png"], "is IMAGE"),
        (["pose", img, "--model", pose, "--out", tmp_path / "link.png"], "is IMAGE"),  # a symlink to it
        (["pose", img, "--model", pose, "--out", tmp_path / "hard.png"], "is IMAGE"),  # a hard link
        (["segment", img, "--model", ocr, "--labels", img], "--labels", "is IMAGE"),
        (["pose", img, "--model", pose, "--boxes", boxes, "--json", boxes], "--json", "is --boxes"),
        (["pose", img, "--model", pose, "--json", pose / "config.json"], "a file of the model --model"),
        (["segment", img, "--model", "hrformer_t", "--weights", ocr / "model.safetensors", "--json",
          ocr / "config.json"], "the config.json beside --weights"),
        (["segment", img, "--model", ocr, "--out", "x.png", "--labels", tmp_path / "x.png"], "the same file"),
        (["classify", img, "--model", f"local-dir:{files / 'cls'}", "--json", files / "cls" / "config.json"],
         "a file of the model"),
    ]
    before = {p: digest(p) for p in (img, boxes, pose / "config.json", ocr / "config.json")}
    for argv, *fragments in cases:
        assert_user_error(capsys, argv, *fragments)
    assert before == {p: digest(p) for p in before}


def test_convert_never_replaces_its_source(files, tmp_path, capsys):
    from parity import original_state_dict

    src = tmp_path / "original.safetensors"
    from safetensors.torch import save_file

    save_file(original_state_dict("mmpose_pose_hrformer_tiny"), str(src))
    (tmp_path / "config.json").write_text("{}")  # another model's config beside the source
    before = digest(src)
    assert_user_error(capsys, ["convert", src, src], "DST", "is SRC")
    assert_user_error(capsys, ["convert", src, tmp_path], "the config.json beside SRC")
    assert digest(src) == before and (tmp_path / "config.json").read_text() == "{}"


# --------------------------------------------------------------------------- atomic writes
def test_outputs_are_written_whole_with_the_umask_mode(files, tmp_path, capsys):
    out = tmp_path / "labels.png"
    old = os.umask(0o027)
    try:
        status, _, err = run_cli(capsys, "segment", files / "img.png", "--model", files / "ocr", "--labels", out,
                                 "--json", tmp_path / "seg.json")
    finally:
        os.umask(old)
    assert status == 0, err
    assert (out.stat().st_mode & 0o777) == 0o640 and ((tmp_path / "seg.json").stat().st_mode & 0o777) == 0o640
    with Image.open(out) as labels:
        assert labels.size == (W, H)
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "labels.png"
    out.write_bytes(b"the previous result")

    class DiskFull:
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"half a PN")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("hrformer.cli.segment._label_picture", lambda labels: DiskFull())
    assert_user_error(capsys, ["segment", files / "img.png", "--model", files / "ocr", "--labels", out],
                      "--labels", "No space left")
    assert out.read_bytes() == b"the previous result" and leftovers(tmp_path) == []


def test_atomic_output_writes_through_symlinks_and_cleans_up_on_interrupt(tmp_path):
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(str(link), "--json") as tmp:
            open(tmp, "w").write("partial")
            raise KeyboardInterrupt
    assert real.read_text() == "old" and leftovers(tmp_path) == []
    with atomic_output(str(link), "--json") as tmp:
        open(tmp, "w").write("new")
    assert link.is_symlink() and real.read_text() == "new" and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- one line, not a traceback
def test_odd_inputs_are_one_line_errors(files, tmp_path, capsys, no_model_loading):
    img, pose = files / "img.png", files / "pose"
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    cases = [
        (["pose", img, "--model", pose, "--boxes", nested], "--boxes", "nested too deeply"),
        (["pose", img, "--model", pose, "--json", tmp_path / ("r" * 300 + ".json")], "--json", "at most"),
        (["pose", img, "--model", pose, "--json", tmp_path / ("d" * 300) / "r.json"], "--json", "at most"),
        (["pose", img, "--model", pose, "--device", "meta"], "--device meta", "no data"),
        (["export", pose, tmp_path / "x.onnx", "--batch", 0], "--batch 0"),
        (["classify", img, "--model", files / "cls", "--topk", 0], "--topk 0"),
    ]
    for argv, *fragments in cases:
        assert_user_error(capsys, argv, *fragments)


def test_image_files_pillow_refuses_are_one_line_errors(files, tmp_path, capsys, monkeypatch):
    jpeg = (files / "img.jpg").read_bytes()
    for cut in (300, len(jpeg) // 2):  # in the header, in the image data
        truncated = tmp_path / f"cut{cut}.jpg"
        truncated.write_bytes(jpeg[:cut])
        assert_user_error(capsys, ["pose", truncated, "--model", files / "pose"], truncated.name)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 48x64 is then over the decompression-bomb limit
    assert_user_error(capsys, ["segment", files / "img.png", "--model", files / "ocr"], "img.png",
                      "decompression")


def test_udp_decoding_of_a_one_pixel_heatmap_is_refused(files, capsys):
    line = assert_user_error(capsys, ["pose", files / "img.png", "--model", files / "pose", "--input-size", 4, 4,
                                      "--method", "udp", "--no-flip"], "UDP")
    assert "method=" not in line  # the advice in flags


@pytest.mark.parametrize("command, extra, advice", [
    ("pose", [], "--batch-size"),
    ("segment", [], "--crop-size"),
    ("classify", [], "--device"),
])
def test_out_of_memory_names_the_way_out(files, capsys, monkeypatch, command, extra, advice):
    model = {"pose": "pose", "segment": "ocr", "classify": "cls"}[command]
    task = {"pose": "pose", "segment": "segmentation", "classify": "classification"}[command]

    def exhausted(*args, **kwargs):
        if command == "segment":  # the CPU allocator's way of saying it
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(f"hrformer.{task}.predict", exhausted)
    assert_user_error(capsys, [command, files / "img.png", "--model", files / model, *extra], "out of memory", advice)


def test_other_runtime_errors_keep_their_traceback(files, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug, not the user's")

    monkeypatch.setattr("hrformer.pose.predict", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["pose", str(files / "img.png"), "--model", str(files / "pose")])


def test_a_closed_pipe_ends_quietly():
    """``hrformer info | head -2``: the reader is gone before the table is written."""
    process = subprocess.Popen([sys.executable, "-m", "hrformer", "info"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before the child, still importing torch, writes anything
    _, err = process.communicate(timeout=120)
    assert err.decode() == "" and process.returncode == 141


# --------------------------------------------------------------------------- advice in the command's flags
def test_advice_names_the_flags_the_command_has(tmp_path, capsys, monkeypatch):
    state = tmp_path / "state.pth"  # hrformer's layout, no config.json: the architecture must be named
    torch.save(hrformer.create_model("hrformer_t", head="pose", num_keypoints=5).state_dict(), state)
    for argv, usage in ((["info", state], "hrformer info hrformer_t --weights "),
                        (["export", state, tmp_path / "x.onnx"], "hrformer export hrformer_t OUT.onnx --weights ")):
        line = assert_user_error(capsys, argv, usage)
        assert "--model" not in line
    # ... and the advice works: info profiles the file's model (profiling itself is test_cli_info's)
    from hrformer.profiling import Profile

    profiled = []

    def fake_profile(model, size):
        profiled.append(model)
        return Profile(params=1, macs=0, macs_by_op={"conv": 0, "linear": 0, "attention": 0}, input_size=size)

    monkeypatch.setattr("hrformer.cli.info.profile", fake_profile)
    status, out, err = run_cli(capsys, "info", "hrformer_t", "--weights", state)
    assert status == 0 and out.splitlines()[2].split()[:2] == ["hrformer_t", "pose"], err
    assert profiled[0].num_keypoints == 5


def test_python_advice_becomes_flags():
    message = ("Could not get the pretrained weights hrformer_t.in1k.\n  Pass a local file instead: "
               "create_model('hrformer_t.in1k', pretrained='path/to/checkpoint') (or checkpoint_path=...): .pth")
    assert command_advice(message, "--model {name} --weights {file}") == (
        "Could not get the pretrained weights hrformer_t.in1k.\n  Pass a local file instead: "
        "--model hrformer_t.in1k --weights FILE: .pth")
    assert command_advice("e.g. --model hrformer_t --weights x.pth)", "hrformer info {name} --weights {file}") == (
        "e.g. hrformer info hrformer_t --weights x.pth)")
    wrong_head = "create it with a '*.coco_256x192' tag or head='pose'"
    assert command_advice(wrong_head, "--model {name} --weights {file}") == "create it with a '*.coco_256x192' tag"
    assert command_advice(wrong_head, "hrformer export {name} OUT.onnx --weights {file}", options={"head"}) == (
        "create it with a '*.coco_256x192' tag or --head pose")
    assert command_advice("use a larger input or method='msra'", "", options={"method"}) == (
        "use a larger input or --method msra")
    assert command_advice("got rel_pos_bias=False", "", options={"method"}) == "got rel_pos_bias=False"


def test_unavailable_weights_advise_weights_flag(files, capsys, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    line = assert_user_error(capsys, ["classify", files / "img.png", "--model", "hrformer_t.in1k"], "--weights")
    assert "pretrained=" not in line and "checkpoint_path" not in line


# --------------------------------------------------------------------------- COCO results as --boxes
def test_coco_results_are_read_as_xywh_with_scores(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [4, 6, 30, 40], "score": 0.9}]))
    assert read_boxes(str(path)) == ([[4, 6, 30, 40, 0.9]], "xywh")
    assert read_boxes(str(path), "xywh") == ([[4, 6, 30, 40, 0.9]], "xywh")
    path.write_text(json.dumps([[4, 6, 30, 40]]))  # plain numbers: as before, xyxy unless told
    assert read_boxes(str(path)) == ([[4, 6, 30, 40]], "xyxy")
    assert read_boxes(str(path), "xywh") == ([[4, 6, 30, 40]], "xywh")


def test_coco_results_of_several_images_and_categories(tmp_path, capsys, files, no_model_loading):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
        {"image_id": 42, "category_id": 3, "bbox": [5, 6, 7, 8], "score": 0.8},  # a car
        {"image_id": 43, "category_id": 1, "bbox": [9, 9, 9, 9], "score": 0.7},
    ]))
    assert read_boxes(str(path), image="/data/000000000042.jpg") == ([[1, 2, 3, 4, 0.9]], "xywh")
    assert "1 person detections" in capsys.readouterr().err
    img = files / "img.png"
    assert_user_error(capsys, ["pose", img, "--model", files / "pose", "--boxes", path], "detections of 2 images")
    assert_user_error(capsys, ["pose", img, "--model", files / "pose", "--boxes", path, "--bbox-format", "xyxy"],
                      "xywh", "--bbox-format xyxy")


def test_pose_reads_a_coco_results_file(files, tmp_path, capsys):
    boxes = tmp_path / "det.json"
    boxes.write_text(json.dumps([{"bbox": [4, 6, 30, 40], "score": 0.95, "image_id": 1, "category_id": 1}]))
    status, out, err = run_cli(capsys, "pose", files / "img.png", "--model", files / "pose", "--boxes", boxes,
                               "--input-size", H, W, "--no-flip")
    assert status == 0, err
    (instance,) = json.loads(out)["instances"]
    assert instance["box"] == [4, 6, 34, 46] and instance["box_score"] == 0.95  # float32 noise rounded away


# --------------------------------------------------------------------------- the other paper cuts
def test_json_floats_carry_float32_precision():
    assert float32_precision(0.949999988079071) == 0.95
    assert json.loads(to_json({"s": torch.tensor([0.95, 1 / 3])}))["s"] == [0.95, 0.33333334]
    values = torch.randn(1000) * 10.0 ** torch.randint(-30, 30, (1000,))
    back = torch.tensor([float32_precision(v) for v in values.tolist()], dtype=torch.float32)
    assert torch.equal(back, values)  # no float32 value changes
    assert json.loads(to_json([float("nan"), 3, "x"])) == [None, 3, "x"]
    numpy = pytest.importorskip("numpy")
    assert json.loads(to_json({"a": numpy.float32(0.95), "b": numpy.arange(2)})) == {"a": 0.95, "b": [0, 1]}


def test_list_pretrained_gives_the_link_of_by_hand_weights(capsys):
    assert main(["list", "--pretrained", "hrformer_t.in1k"]) == 0
    out = capsys.readouterr().out
    assert "by hand from " + hrformer.get_pretrained_cfg("hrformer_t", "in1k").origin_url in out


def test_classify_prints_and_writes_the_top_classes(files, capsys):
    report = files / "cls" / "classes.json"  # beside the model's own files: no input, so allowed
    status, out, err = run_cli(capsys, "classify", files / "img.png", "--model", files / "cls", "--topk", 3,
                               "--json", report)
    assert status == 0, err
    expected = hrformer.classification.predict(hrformer.from_pretrained(files / "cls"), str(files / "img.png"), topk=3)
    classes = json.loads(report.read_text())["classes"]
    assert [c["index"] for c in classes] == expected.indices.tolist()
    assert [c["probability"] for c in classes] == pytest.approx(expected.probabilities.tolist())
    assert out.splitlines()[2].split()[:2] == ["1", str(expected.indices[0].item())]
    assert_user_error(capsys, ["classify", files / "img.png", "--model", files / "pose"], "classification")


def test_export_static_fixes_the_size_and_keeps_the_batch(files, tmp_path, capsys, monkeypatch):
    calls = []

    def fake_export(model, path, **kwargs):
        calls.append(kwargs)
        open(path, "wb").close()
        return {"path": str(path), "input_size": tuple(kwargs["input_size"]), "dynamic": kwargs["dynamic"],
                "dynamic_batch": kwargs["dynamic_batch"], "opset": kwargs["opset"], "outputs": ["heatmaps"]}

    monkeypatch.setattr("hrformer.export.export_onnx", fake_export)
    status, out, err = run_cli(capsys, "export", files / "pose", tmp_path / "s.onnx", "--static", H, W, "--no-verify")
    assert status == 0, err
    assert "(batch, C, 64, 48), size static" in out
    status, out, err = run_cli(capsys, "export", files / "pose", tmp_path / "b.onnx", "--static", H, W, "--batch", 2,
                               "--no-verify")
    assert status == 0 and "(2, C, 64, 48), batch and size static" in out, err
    assert [(c["dynamic"], c["dynamic_batch"], c["batch_size"]) for c in calls] == [(False, True, 1), (False, False, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.onnx", "s.onnx"]


@pytest.mark.slow  # a real export and its check in ONNX Runtime: ~15 s on 2 busy cores
def test_export_static_graph_runs_any_batch(files, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "static.onnx"
    status, text, err = run_cli(capsys, "export", files / "pose", out, "--static", H, W)
    assert status == 0 and "ok" in text, err  # verified at batch 1 and 2
    (images,) = onnx.load(str(out)).graph.input
    assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == ["batch", 3, H, W]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, H, W)
    (heatmaps,) = session.run(None, {"images": x.numpy()})
    with torch.inference_mode():
        expected = hrformer.from_pretrained(files / "pose")(x)
    assert torch.allclose(torch.from_numpy(heatmaps), expected, atol=1e-4)
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask() and leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

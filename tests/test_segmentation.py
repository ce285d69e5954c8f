"""Semantic segmentation as in the paper: the OCR head, the official segmentation checkpoints
(parity through ``from_original``), the relative position table resize for window 13/15, the
registry, the multi-scale inference helper and the ``hrformer segment`` command."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import hrformer
from hrformer.cli import main as cli_main
from hrformer.datasets import DATASETS
from hrformer.factory import find_architecture, get_model_entry
from hrformer.profiling import count_params, profile
from hrformer.published import OCR_MEASURED
from hrformer.config import HRFORMER_T
from hrformer.segmentation import (overlay, predict, preprocess, window_starts,
                                      windows)
from hrformer.weights import CheckpointLayoutError, convert_original, detect_layout, unwrap_state_dict
from hrformer.weights.loading import resize_rel_pos_table
from hrformer.weights.pretrained import PretrainedCfg
from parity import (
    SEG_VARIANTS,
    TOL,
    manifest,
    original_state_dict,
    parity_input,
    reference_outputs,
    relative_error,
    run_seg_outputs,
    seg_arch,
)


def _released(sd):
    """How the official seg checkpoints are saved: DistributedDataParallel keys in ``state_dict``."""
    return {"config_dict": {"network": {"model_name": "hrt_ocr_v2"}},
            "state_dict": {"module." + k: v for k, v in sd.items()}}


def _seg_parity_errors(variant, fuse=False, source=None):
    model = hrformer.from_original(source if source is not None else _released(original_state_dict(variant)))
    assert not model.training
    assert find_architecture(model.config) == seg_arch(variant)
    assert model.head_type == "ocr" and model.num_classes == 19
    assert model.config.rel_pos_bias and model.config.upsample_mode == "nearest" and model.config.multiscale_output
    if fuse:
        model.fuse_for_inference()
    errors = {}
    for size in manifest(variant)["sizes"]:
        outs = run_seg_outputs(model, parity_input(size)[:1])  # the fixtures keep batch element 0
        for name in reference_outputs(variant, size):
            errors[f"{size}.{name}"] = relative_error(variant, size, name, outs[name])
    assert len(errors) == 8, errors  # 2 logits x 2 sizes + 4 stage-4 maps at 200x152
    return errors


def test_seg_fixtures_present():
    assert [seg_arch(v) for v in SEG_VARIANTS] == ["hrformer_b", "hrformer_b_w13", "hrformer_b_w15", "hrformer_s"]


def test_seg_parity_small_reference_path(tmp_path, capsys):
    """HRFormer-S + OCR from a released-style .pth, unfused reference layers: every stored output at
    both sizes; ``hrformer convert`` then writes our files, reloaded identically."""
    path = tmp_path / "hrt_small_ocr_v2_cityscapes.pth"
    torch.save(_released(original_state_dict("official_seg_hrt_small_ocr_v2")), path)
    errors = _seg_parity_errors("official_seg_hrt_small_ocr_v2", source=path)
    assert all(e <= TOL for e in errors.values()), errors
    assert cli_main(["convert", str(path), str(tmp_path / "converted")]) == 0
    out = capsys.readouterr().out
    assert "official_seg layout" in out and "ocr, num_classes 19" in out and "all tensors identical" in out
    cfg = hrformer.from_pretrained(tmp_path / "converted").pretrained_cfg
    assert cfg.name == "hrformer_s.cityscapes_ocr" and cfg["channel_order"] == "BGR"


@pytest.mark.parametrize("variant", [
    v if "win15" in v else pytest.param(v, marks=pytest.mark.slow) for v in SEG_VARIANTS if "small" not in v
])
def test_seg_parity_base_fused(variant):
    """HRFormer-B with windows 7 / 13 / 15 (with 13 and 15 every branch pads), fused inference path;
    window 15 (the largest model) in the default suite, the others and the unfused reference path
    of all three in the slow one (``-m slow``)."""
    errors = _seg_parity_errors(variant, fuse=True)
    assert all(e <= TOL for e in errors.values()), errors


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in SEG_VARIANTS if "small" not in v])
def test_seg_parity_base_reference_path(variant):
    errors = _seg_parity_errors(variant)
    assert all(e <= TOL for e in errors.values()), errors


# --------------------------------------------------------------------------- layout detection
def test_official_seg_layout_is_told_apart():
    seg = original_state_dict("official_seg_hrt_small_ocr_v2")
    assert detect_layout(seg) == "official_seg"
    assert detect_layout(unwrap_state_dict(_released(seg))) == "official_seg"
    backbone_only = {k: v for k, v in seg.items() if k.startswith("backbone.")}
    assert detect_layout(backbone_only) == "official_pose"  # what a seg head-less file is
    sd, kwargs = convert_original(seg)
    assert kwargs["head"] == "ocr" and kwargs["num_classes"] == 19
    assert not any(k.startswith(("conv3x3", "aux_head", "cls_head", "ocr_distri_head")) for k in sd)
    partial = {k: v for k, v in seg.items() if not k.startswith("ocr_distri_head.")}
    with pytest.raises(CheckpointLayoutError, match="ocr_distri_head"):
        detect_layout(partial)


def test_unknown_layout_names_what_it_found():
    with pytest.raises(CheckpointLayoutError, match=r"decoder\.\*"):
        detect_layout({"decoder.weight": torch.zeros(1), "encoder.layer.0.weight": torch.zeros(1)})


def test_class_count_follows_the_checkpoint():
    sd = original_state_dict("official_seg_hrt_small_ocr_v2")
    sd = {k: (v[:5] if k in ("cls_head.weight", "cls_head.bias", "aux_head.2.weight", "aux_head.2.bias") else v)
          for k, v in sd.items()}
    _, kwargs = convert_original(sd)
    assert kwargs["num_classes"] == 5 and kwargs["name"] == "hrformer_s"


# --------------------------------------------------------------------------- window 13/15 from ImageNet weights
def test_rel_pos_table_resize_matches_the_official_recipe():
    table = torch.randn(13 * 13, 4)
    ours = resize_rel_pos_table(table, 29 * 29)
    image = table.permute(1, 0).reshape(1, 4, 13, 13)
    theirs = F.interpolate(image, size=(29, 29), mode="bilinear").reshape(4, -1).permute(1, 0)
    assert torch.equal(ours, theirs)


def test_imagenet_weights_into_a_larger_window_model(tmp_path, caplog):
    sd = original_state_dict("official_cls_hrt_tiny")
    path = tmp_path / "hrt_tiny.pth"
    torch.save({"model": sd}, path)
    with caplog.at_level(logging.INFO, logger="hrformer"):
        model = hrformer.create_model("hrformer_t", head="ocr", num_classes=19, window_size=15, pretrained=path)
    assert "relative position bias tables resized" in caplog.text and "7 -> 15" in caplog.text
    own = model.state_dict()
    key = "stage4.hr_modules.0.branches.3.1.attn.relative_position_bias_table"
    original = sd["stage4.0.branches.3.1.attn.attn.relative_position_bias_table"]
    assert own[key].shape == (29 * 29, original.shape[1])
    assert torch.equal(own[key], resize_rel_pos_table(original, 29 * 29))
    assert torch.equal(own["stem.conv1.conv.weight"], sd["conv1.weight"])


# --------------------------------------------------------------------------- architectures and registry
@pytest.mark.parametrize("name, expected", [
    ("hrformer_s", 13_523_856), ("hrformer_b", 56_032_512), ("hrformer_b_w15", 56_196_480),
    pytest.param("hrformer_b_w13", 56_143_776, marks=pytest.mark.slow),
])
def test_parameter_counts(name, expected):
    assert count_params(hrformer.create_model(name, head="ocr", num_classes=19)) == expected
    assert OCR_MEASURED[name]["params"] == expected  # what `hrformer info` prints
    if name == "hrformer_s":
        assert count_params(hrformer.create_model(name, head="ocr", num_classes=20)) == expected + 1_026


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OCR_MEASURED))
def test_info_ocr_macs_are_what_profiling_measures(name):
    model = hrformer.create_model(name, head="ocr", num_classes=19)
    for h, w in ((512, 1024), (520, 520)):
        assert round(profile(model, (h, w)).gmacs * 1e9) == OCR_MEASURED[name][f"macs_{h}x{w}"]


def test_info_lists_the_ocr_models(capsys):
    assert cli_main(["info"]) == 0
    out = capsys.readouterr().out
    assert "Segmentation (OCR head" in out
    assert "ocr   hrformer_b_w15  15      56.196    561.7           294.2" in out


def test_window_architectures():
    assert hrformer.create_model("hrformer_b_w13", head="ocr").config.window_size == 13
    assert get_model_entry("hrformer_b_w15").config.window_size == 15


SEG_TAGS = [f"{a}.{d}_ocr" for a in ("hrformer_s", "hrformer_b", "hrformer_b_w15")
            for d in ("cityscapes", "pascal_context", "coco_stuff")] + \
           [f"{a}.ade20k_ocr" for a in ("hrformer_s", "hrformer_b", "hrformer_b_w13")]


def test_registry_has_the_twelve_segmentation_models():
    assert sorted(hrformer.list_models("*_ocr", pretrained=True)) == sorted(SEG_TAGS)
    classes = {"cityscapes": 19, "pascal_context": 59, "coco_stuff": 171, "ade20k": 150}
    for name in SEG_TAGS:
        arch, tag = name.split(".")
        cfg = hrformer.get_pretrained_cfg(arch, tag)
        dataset = tag[: -len("_ocr")]
        assert cfg["num_classes"] == classes[dataset] == len(cfg.class_names) == DATASETS[dataset].num_classes
        assert cfg.layout == "official_seg" and cfg.url is None and cfg.origin_url.startswith("https://1drv.ms/")
        assert cfg["channel_order"] == "BGR" and cfg["mean"] == (0.485, 0.456, 0.406)
        assert cfg["std"] == (0.229, 0.224, 0.225)
        assert cfg.input_size == ((3, 512, 1024) if dataset == "cityscapes" else (3, 520, 520))
        assert cfg.test_size == ((1024, 2048) if dataset == "cityscapes" else None)
        assert cfg.test_scales == (0.75, 1.0, 1.25)
        assert set(cfg.metrics) == {f"{dataset}_val_miou", f"{dataset}_val_miou_ms"}
        assert cfg.metrics[f"{dataset}_val_miou"] < cfg.metrics[f"{dataset}_val_miou_ms"]
        assert PretrainedCfg.from_dict(cfg.to_dict()) == cfg
    assert hrformer.get_pretrained_cfg("hrformer_b_w15", "cityscapes_ocr").metrics == {
        "cityscapes_val_miou": 81.9, "cityscapes_val_miou_ms": 82.6}
    model = hrformer.create_model("hrformer_b_w13.ade20k_ocr")
    assert model.config.window_size == 13 and model.num_classes == 150 and model.training


# --------------------------------------------------------------------------- forward and inference helper
@pytest.fixture(scope="module")
def tiny_ocr():
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head="ocr", num_classes=5)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_forward_at_input_resolution_and_aux(tiny_ocr):
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        logits, aux = tiny_ocr(x, return_aux=True)
        feats = tiny_ocr.forward_features(x)
        stride4, aux4 = tiny_ocr.forward_head(feats, return_aux=True)
        main_only = tiny_ocr.forward_head(feats, output_size=(45, 61))
    assert logits.shape == aux.shape == (1, 5, 45, 61)
    assert stride4.shape == aux4.shape == (1, 5, 12, 16)
    torch.testing.assert_close(main_only, logits)
    for full, low in ((logits, stride4), (aux, aux4)):
        torch.testing.assert_close(full, F.interpolate(low, size=(45, 61), mode="bilinear", align_corners=True))


def test_head_arguments_need_a_head():
    backbone = hrformer.create_model("hrformer_t", features_only=True)
    with pytest.raises(TypeError, match="no head arguments"):
        backbone(torch.randn(1, 3, 64, 64), return_aux=True)


def _with_cfg(model, **cfg):
    """A copy of ``model`` with another ``pretrained_cfg`` (predict never changes the model it gets)."""
    other = copy.deepcopy(model)
    other.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "channel_order": "RGB", **cfg}
    return other


def test_predict_single_scale_is_a_direct_forward(tiny_ocr):
    image = torch.randint(0, 256, (3, 37, 50), dtype=torch.uint8)
    cfg = {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3), "channel_order": "BGR"}
    result = predict(_with_cfg(tiny_ocr, **cfg), image)
    x = image.float().div(255).flip(0)  # RGB -> BGR
    x = (x - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)
    torch.testing.assert_close(preprocess(image, cfg)[0], x)
    with torch.no_grad():
        direct = tiny_ocr(x.unsqueeze(0))[0]
    torch.testing.assert_close(result.logits, direct, rtol=0, atol=0)
    assert torch.equal(result.labels, direct.argmax(0))
    logits, labels = result  # unpacks as the (logits, labels) predict returned before
    assert logits is result.logits and labels is result.labels


def test_predict_multi_scale_flip_is_the_official_sum(tiny_ocr):
    image = torch.rand(1, 3, 40, 52)
    scales = (0.75, 1.25)
    results = predict(tiny_ocr, image, scales=scales, flip=True)
    x = preprocess(image, tiny_ocr.pretrained_cfg)
    total = torch.zeros(1, 5, 40, 52)
    with torch.no_grad():
        for s in scales:
            xs = F.interpolate(x, size=(int(40 * s), int(52 * s)), mode="bilinear", align_corners=True)
            for flipped in (False, True):
                out = tiny_ocr(xs.flip(3) if flipped else xs)
                out = F.interpolate(out, size=(40, 52), mode="bilinear", align_corners=True)
                total += out.flip(3) if flipped else out
    assert isinstance(results, list) and len(results) == 1  # a batch in, one result per image out
    torch.testing.assert_close(results[0].logits, total[0])
    assert results[0].labels.shape == (40, 52) and torch.equal(results[0].labels, total[0].argmax(0))


# --------------------------------------------------------------------------- sliding windows
@pytest.fixture(scope="module")
def small_ocr():
    """One module per stage, one block, 3 classes: the fastest model with the OCR head's behaviour."""
    torch.manual_seed(1)
    model = hrformer.HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="ocr", num_classes=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _reference_slide(model, x, crop, stride):
    """mmseg's slide mode written out with explicit loops: (1, C, H, W) normalised -> (1, K, H, W)."""
    h, w = x.shape[-2:]
    ph, pw = max(crop[0] - h, 0), max(crop[1] - w, 0)
    x = F.pad(x, (0, pw, 0, ph))  # bottom / right, zeros after normalisation
    H, W = x.shape[-2:]
    rows = max(H - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    cols = max(W - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    total, count = None, torch.zeros(H, W)
    with torch.no_grad():
        for r in range(rows):
            for c in range(cols):
                y2, x2 = min(r * stride[0] + crop[0], H), min(c * stride[1] + crop[1], W)
                y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
                out = model(x[:, :, y1:y2, x1:x2])
                total = torch.zeros(1, out.shape[1], H, W) if total is None else total
                for i in range(y1, y2):  # pixel by pixel (rows), as plainly as it gets
                    total[0, :, i, x1:x2] += out[0, :, i - y1]
                    count[i, x1:x2] += 1
    return (total / count)[:, :, :h, :w]


def test_windows_placed_as_mmseg():
    # 3 rows (0, 16, 32), 3 columns (0, 40, then 80 moved back to end at 96: 48)
    assert windows(64, 96, (32, 48), (16, 40)) == [
        (y, y + 32, x, x + 48) for y in (0, 16, 32) for x in (0, 40, 48)]
    assert window_starts(20, 32, 16) == [0]  # smaller than the crop: one (padded) window
    assert window_starts(33, 32, 32) == [0, 1]


def test_one_window_covering_the_image_is_the_whole_image(small_ocr):
    image = torch.rand(3, 64, 96)
    whole = predict(small_ocr, image)
    slide = predict(small_ocr, image, crop_size=(64, 96), stride=(32, 48))
    torch.testing.assert_close(slide.logits, whole.logits, rtol=0, atol=0)
    assert torch.equal(slide.labels, whole.labels)


def test_overlapping_windows_are_averaged(small_ocr):
    image = torch.rand(3, 48, 64)  # 2 x 2 windows, the last column moved back from 40 to 16
    x = preprocess(image, small_ocr)
    expected = _reference_slide(small_ocr, x, (32, 48), (16, 40))[0]
    result = predict(small_ocr, image, crop_size=(32, 48), stride=(16, 40))
    torch.testing.assert_close(result.logits, expected, rtol=0, atol=1e-6)
    assert torch.equal(result.labels, result.logits.argmax(0))
    assert not torch.allclose(result.logits, predict(small_ocr, image).logits, atol=1e-3)  # windows differ
    batched = predict(small_ocr, image, crop_size=(32, 48), stride=(16, 40), batch_size=3)  # 4 windows: 3 + 1
    torch.testing.assert_close(batched.logits, expected, rtol=1e-5, atol=1e-5)


def test_an_image_smaller_than_the_crop_is_padded(small_ocr):
    image = torch.rand(3, 40, 80)  # shorter than the crop, wider than it
    x = preprocess(image, small_ocr)
    result = predict(small_ocr, image, crop_size=(48, 64), stride=(48, 32))
    assert result.logits.shape == (3, 40, 80)
    torch.testing.assert_close(result.logits, _reference_slide(small_ocr, x, (48, 64), (48, 32))[0], rtol=0, atol=1e-6)
    with torch.no_grad():  # the padded window is what the network saw: not the unpadded image
        unpadded = small_ocr(x[:, :, :, :64])[0]
    assert not torch.allclose(result.logits[:, :, :32], unpadded[:, :, :32], atol=1e-3)


def test_windows_with_scales_and_flip(small_ocr):
    image = torch.rand(3, 40, 50)
    x = preprocess(image, small_ocr)
    crop, stride = (32, 32), (24, 24)  # scale 0.5: one padded window; 1.0: 2 x 2 windows
    expected = torch.zeros(1, 3, 40, 50)
    for s in (0.5, 1.0):
        xs = F.interpolate(x, size=(int(40 * s), int(50 * s)), mode="bilinear", align_corners=True)
        for flipped in (False, True):
            out = _reference_slide(small_ocr, xs.flip(3) if flipped else xs, crop, stride)
            out = F.interpolate(out, size=(40, 50), mode="bilinear", align_corners=True)
            expected += out.flip(3) if flipped else out
    result = predict(small_ocr, image, scales=(0.5, 1.0), flip=True, crop_size=crop, stride=stride)
    torch.testing.assert_close(result.logits, expected[0], rtol=1e-5, atol=1e-5)


def test_channel_order_class_names_and_pictures(small_ocr):
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8)
    rgb = predict(small_ocr, image)
    bgr = predict(small_ocr, image.flip(0), channel_order="BGR")  # what OpenCV gives
    torch.testing.assert_close(bgr.logits, rgb.logits, rtol=0, atol=0)
    assert rgb.class_names is None
    named = predict(_with_cfg(small_ocr, class_names=("sky", "road", "car"), dataset="toy"), image)
    assert named.class_names == ("sky", "road", "car") and named.dataset == "toy"
    areas = named.class_areas()
    assert set(areas) <= {"sky", "road", "car"} and abs(sum(areas.values()) - 1) < 1e-6
    picture = named.colorize()
    assert picture.shape == (3, 32, 48) and picture.dtype == torch.uint8
    assert torch.equal(picture[:, 0, 0], torch.tensor(named.palette[int(named.labels[0, 0])], dtype=torch.uint8))
    assert torch.equal(overlay(image, named.labels, named.palette, alpha=0.0), image)
    assert torch.equal(overlay(image.float() / 255, named.labels, named.palette, alpha=1.0), picture)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        overlay(image, named.labels, named.palette, alpha=5)


@pytest.mark.parametrize("kwargs, error, fix", [
    ({"crop_size": 0}, ValueError, "positive int"),
    ({"crop_size": (32,)}, ValueError, r"pair \(height, width\)"),
    ({"crop_size": (32.0, 48)}, ValueError, "positive int"),
    ({"crop_size": (32, 48), "stride": (16, 64)}, ValueError, "stride <= crop_size"),
    ({"stride": 16}, ValueError, "pass crop_size"),
    ({"scales": ()}, ValueError, "non-empty"),
    ({"scales": (1.0, -0.5)}, ValueError, "positive numbers"),
    ({"scales": (0.01,)}, ValueError, "larger scales"),
    ({"batch_size": 0}, ValueError, "positive int"),
    ({"flip": "yes"}, TypeError, "True or False"),
    ({"normalized": True}, TypeError, "normalized"),
])
def test_refused_arguments(small_ocr, kwargs, error, fix):
    with pytest.raises(error, match=fix):
        predict(small_ocr, torch.rand(3, 32, 48), **kwargs)


@pytest.mark.parametrize("image, fix", [
    (torch.rand(3, 32, 48) * 255, "divide"),  # a 0-255 float image: once silently 100x too large logits
    (torch.full((3, 32, 48), float("nan")), "NaN"),
    (torch.rand(32, 48, 3), "permute"),
])
def test_refused_images(small_ocr, image, fix):
    with pytest.raises(ValueError, match=fix):
        predict(small_ocr, image)
    with pytest.raises(ValueError, match="divide"):
        preprocess(torch.rand(3, 8, 8) * 255, small_ocr)


def test_the_model_is_never_changed_and_a_training_model_refused(small_ocr):
    before = {k: v.clone() for k, v in small_ocr.state_dict().items()}
    predict(small_ocr, torch.rand(3, 32, 48), crop_size=32, stride=32, flip=True)
    assert not any(m.training for m in small_ocr.modules())
    assert all(torch.equal(v, small_ocr.state_dict()[k]) for k, v in before.items())
    training = copy.deepcopy(small_ocr).train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        predict(training, torch.rand(3, 32, 48))
    assert training.training  # refused, not switched


def test_threads_share_one_model(small_ocr):
    images = [torch.rand(3, 32, 48) for _ in range(2)]
    expected = [predict(small_ocr, im).logits for im in images]
    got = [None, None]

    def work(i):
        got[i] = predict(small_ocr, images[i]).logits

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_a_pose_model_is_refused():
    pose = hrformer.HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="pose").eval()
    with pytest.raises(ValueError, match="head='ocr'"):
        predict(pose, torch.rand(3, 32, 48))


@pytest.mark.slow
def test_large_image_in_sliding_windows_stays_under_2_5_gb():
    """HRFormer-T + OCR on a 2000x3000 image with 1024x1024 windows: peak RSS of its own process
    (``benchmarks/segment_large.py``'s case) under 2.5 GB (6.3 GB as one whole-image pass)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "benchmarks.segment_large", "--child", "t_2000x3000_slide"],
                          capture_output=True, text=True, cwd=root, check=True)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["mode"] == "slide" and row["size"] == [2000, 3000]
    assert row["peak_rss_mb"] < 2500, row

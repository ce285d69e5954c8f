"""Semantic segmentation as in the paper: the OCR head, the official segmentation checkpoints
(parity through ``from_original``), the relative position table resize for window 13/15, the
registry, the multi-scale inference helper and the ``hrformer segment`` command."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

import hrformer
from hrformer.cli import main as cli_main
from hrformer.datasets import DATASETS
from hrformer.factory import find_architecture, get_model_entry
from hrformer.profiling import count_params, profile
from hrformer.published import OCR_MEASURED
from hrformer.segmentation import predict, preprocess
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
    assert kwargs["layout"] == "official_seg" and kwargs["head"] == "ocr" and kwargs["num_classes"] == 19
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


def test_predict_single_scale_is_a_direct_forward(tiny_ocr):
    image = torch.randint(0, 256, (3, 37, 50), dtype=torch.uint8)
    cfg = {"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.25, 0.3), "channel_order": "BGR"}
    logits, labels = predict(tiny_ocr, image, cfg=cfg)
    x = image.float().div(255).flip(0)  # RGB -> BGR
    x = (x - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)
    torch.testing.assert_close(preprocess(image, cfg)[0], x)
    with torch.no_grad():
        direct = tiny_ocr(x.unsqueeze(0))[0]
    torch.testing.assert_close(logits, direct, rtol=0, atol=0)
    assert torch.equal(labels, direct.argmax(0))


def test_predict_multi_scale_flip_is_the_official_sum(tiny_ocr):
    image = torch.rand(1, 3, 40, 52)
    scales = (0.75, 1.25)
    logits, labels = predict(tiny_ocr, image, scales=scales, flip=True)
    x = preprocess(image, tiny_ocr.pretrained_cfg)
    total = torch.zeros(1, 5, 40, 52)
    with torch.no_grad():
        for s in scales:
            xs = F.interpolate(x, size=(int(40 * s), int(52 * s)), mode="bilinear", align_corners=True)
            for flipped in (False, True):
                out = tiny_ocr(xs.flip(3) if flipped else xs)
                out = F.interpolate(out, size=(40, 52), mode="bilinear", align_corners=True)
                total += out.flip(3) if flipped else out
    torch.testing.assert_close(logits, total)
    assert labels.shape == (1, 40, 52) and torch.equal(labels, total.argmax(1))


# --------------------------------------------------------------------------- command line
def test_segment_cli_on_a_tiny_model(tiny_ocr, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    weights = tmp_path / "tiny"
    hrformer.save_pretrained(tiny_ocr, weights)
    image = tmp_path / "in.png"
    pixels = torch.randint(0, 256, (30, 41, 3), dtype=torch.uint8)
    Image.frombytes("RGB", (41, 30), bytes(pixels.flatten().tolist())).save(image)
    out, labels = tmp_path / "out.png", tmp_path / "labels.png"
    status = cli_main(["segment", str(image), "--model", "hrformer_t", "--weights", str(weights / "model.safetensors"),
                       "--out", str(out), "--labels", str(labels)])
    assert status == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as picture:
        assert picture.size == (41, 30) and picture.mode == "RGB"
    with Image.open(labels) as label_map:
        assert label_map.size == (41, 30)
        assert label_map.mode == "L"
        values = torch.frombuffer(bytearray(label_map.tobytes()), dtype=torch.uint8).long()
    _, expected = predict(tiny_ocr, pixels.permute(2, 0, 1))
    assert torch.equal(values.view(30, 41), expected)
    with pytest.raises(SystemExit, match="no segmentation weights"):
        cli_main(["segment", str(image), "--model", "hrformer_t", "--out", str(out)])

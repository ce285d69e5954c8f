"""The model and weights contract (issue 14): values checked by type, one loading path whose
checkpoint decides head, semantics and preprocessing, strict rebuilds, errors that say what a file
holds, timm's names for configs, fast failure offline."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest
import torch

import hrformer
from hrformer import ConfigError
from hrformer.weights import CheckpointLayoutError, WeightsUnavailableError, hub
from parity import SMALL, original_state_dict

X = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def cls_tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("official") / "hrt_tiny.pth"
    torch.save({"model": original_state_dict("official_cls_hrt_tiny")}, path)
    return path


# --------------------------------------------------------------------------- values by type
@pytest.mark.parametrize("field, value", [
    ("rel_pos_bias", "false"), ("mask_padding", "no"), ("ffn_dw", "False"), ("shift_windows", None),
    ("multiscale_output", 1), ("mlp_ratio", "4"), ("window_size", True), ("window_size", 7.0),
])
def test_config_values_of_the_wrong_type_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        hrformer.create_model("hrformer_t", **{field: value})


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm_eval="yes"), "norm_eval"), (dict(drop_rate="0.1"), "drop_rate"),
    (dict(drop_path_rate="0.1"), "drop_path_rate"), (dict(num_classes=True), "num_classes"),
    (dict(head="segmentation", num_classes=0), "at least one output"),
    (dict(head="ocr", num_classes=0), "at least one output"),
    (dict(head="pose", num_keypoints=0), "at least one output"),
])
def test_model_arguments_of_the_wrong_type_or_zero_outputs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hrformer.HRFormer(SMALL, **kwargs)


def test_classifier_with_zero_classes_gives_pooled_features():
    model = hrformer.HRFormer(SMALL, num_classes=0).eval()
    with torch.no_grad():
        assert model(X).shape == (1, model.num_features)


def test_config_json_values_are_checked_like_arguments(tmp_path):
    hrformer.save_pretrained(hrformer.HRFormer(SMALL, head="pose"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["rel_pos_bias"] = "false"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json.*rel_pos_bias"):
        hrformer.from_pretrained(tmp_path)


# --------------------------------------------------------------------------- one loading path
def test_convert_original_kwargs_build_the_model_that_loads_it(cls_tiny_file):
    state_dict, kwargs = hrformer.convert_original(cls_tiny_file)
    model = hrformer.create_model(**kwargs)
    model.load_state_dict(state_dict)  # strict
    assert kwargs["name"] == "hrformer_t" and "layout" not in kwargs


def test_create_model_on_an_original_file_equals_from_original(cls_tiny_file):
    a = hrformer.from_original(cls_tiny_file)
    b = hrformer.create_model("hrformer_t", pretrained=cls_tiny_file)
    assert (a.config, a.model_kwargs(), a.pretrained_cfg) == (b.config, b.model_kwargs(), b.pretrained_cfg)
    assert b.config.upsample_mode == "nearest"  # the official classification code's, from the file
    loaded = b.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in a.state_dict().items())


def test_tag_weights_under_another_head_load_the_backbone(cls_tiny_file, caplog):
    with caplog.at_level(logging.WARNING, logger="hrformer"):
        model = hrformer.create_model("hrformer_t.in1k", pretrained=cls_tiny_file, head="pose")
    assert model.head_type == "pose" and model.num_keypoints == 17
    assert model.config.upsample_mode == "nearest"  # the weights' semantics stay
    assert not model.config.multiscale_output  # the new head's last stage
    assert any(r.levelno == logging.WARNING and "head" in r.getMessage() for r in caplog.records)
    source = hrformer.from_original(cls_tiny_file)
    own = model.state_dict()
    assert torch.equal(own["stage3.hr_modules.0.branches.2.0.attn.qkv.weight"],
                       source.state_dict()["stage3.hr_modules.0.branches.2.0.attn.qkv.weight"])


def test_official_segmentation_weights_ask_for_bgr_whatever_the_entry_point(tmp_path):
    path = tmp_path / "hrt_small_ocr.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in original_state_dict("official_seg_hrt_small_ocr_v2").items()}},
               path)
    built = hrformer.create_model("hrformer_s", head="ocr", num_classes=19, pretrained=path)
    assert built.pretrained_cfg.channel_order == "BGR"
    plain = hrformer.create_model("hrformer_s", head="ocr", num_classes=19, upsample_mode="nearest")
    assert plain.pretrained_cfg.channel_order == "RGB"
    hrformer.load_weights(plain, path)
    assert plain.pretrained_cfg.channel_order == "BGR"
    hrformer.save_pretrained(built, tmp_path / "saved")
    assert hrformer.from_pretrained(tmp_path / "saved").pretrained_cfg.channel_order == "BGR"


def test_from_pretrained_is_strict_about_config_and_weights(tmp_path):
    hrformer.save_pretrained(hrformer.HRFormer(SMALL, head="pose"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_kwargs"]["num_keypoints"] = 21
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointLayoutError, match=r"pose head \(17 outputs\).*pose head \(21 outputs\)"):
        hrformer.from_pretrained(tmp_path)
    asked = hrformer.from_pretrained(tmp_path, num_keypoints=5)  # asked for: the last layer is new
    assert asked.num_keypoints == 5


def test_saving_and_loading_unwrap_data_parallel(tmp_path):
    model = hrformer.HRFormer(SMALL, head="pose").eval()
    hrformer.save_pretrained(torch.nn.DataParallel(model), tmp_path)
    again = torch.nn.DataParallel(hrformer.HRFormer(SMALL, head="pose"))
    hrformer.load_weights(again, tmp_path / "model.safetensors")
    loaded = again.module.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())


def test_save_pretrained_to_a_pickle_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not a pickle"):
        hrformer.save_pretrained(hrformer.HRFormer(SMALL), tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


def test_mismatch_names_what_the_file_holds(cls_tiny_file, tmp_path):
    with pytest.raises(CheckpointLayoutError, match=r"holds hrformer_t \(channels 18/36/72/144.*the model is hrformer_s"):
        hrformer.from_original(cls_tiny_file, arch="hrformer_s")
    fused = hrformer.HRFormer(SMALL, head="pose").fuse_for_inference()
    torch.save(fused.state_dict(), tmp_path / "fused.pth")
    with pytest.raises(CheckpointLayoutError, match="fused for inference"):
        hrformer.load_weights(hrformer.HRFormer(SMALL, head="pose"), tmp_path / "fused.pth")


# --------------------------------------------------------------------------- timm's names
def test_timm_names_for_configs_and_lists():
    model = hrformer.HRFormer(SMALL, head="pose")
    model.pretrained_cfg = hrformer.get_pretrained_cfg("hrformer_s.coco_256x192")
    assert hrformer.get_pretrained_cfg("hrformer_s.in1k") == hrformer.get_pretrained_cfg("hrformer_s", "in1k")
    assert hrformer.get_pretrained_cfg("hrformer_s.in1k").interpolation == "bicubic"  # official cls/config.py
    expected = hrformer.resolve_data_config(model)
    assert hrformer.resolve_data_config({}, model=model) == expected == hrformer.resolve_data_config(model=model)
    assert hrformer.resolve_data_config({"input_size": (3, 384, 288)}, model=model)["input_size"] == (3, 384, 288)
    names = hrformer.list_models(pretrained=True, exclude_filters=["*_ocr", "*official"])
    assert names and not any(n.endswith(("_ocr", "official")) for n in names)
    assert "hrformer_t_hrnet" not in hrformer.list_models("hrformer_t*", exclude_filters="*_hrnet")


# --------------------------------------------------------------------------- offline
def test_pretrained_without_a_network_fails_fast(monkeypatch, tmp_path):
    from huggingface_hub import constants

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(hub, "_REACHABLE", {})
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="could not be reached"):
        hrformer.create_model("hrformer_t", pretrained=True, cache_dir=tmp_path)
    assert time.monotonic() - start < 8

"""What a new user types: clear errors, early; no keyword argument silently ignored; every
constructor argument survives save_pretrained -> from_pretrained; loaded models come in eval mode."""

from __future__ import annotations

import json

import pytest
import torch

import hrformer
from hrformer import ConfigError


@pytest.mark.parametrize("kwargs, match", [
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(drop_path_rate=-0.1), "drop_path_rate"),
    (dict(mlp_ratio=0), "mlp_ratio"),
    (dict(window_size=0), "window_size"),
    (dict(in_chans=0), "in_chans"),
    (dict(head=None, out_indices=()), "out_indices"),
    (dict(head=None, out_indices=(0, 0)), "repeats"),
    (dict(head="pose", num_classes=10), "num_classes=10 does not apply to head='pose'"),
    (dict(head="classification", num_keypoints=5), "num_keypoints"),
    (dict(head="pose", drop_rate=0.1), "no dropout"),
    (dict(head="pose", multiscale_output=False, upsample_mode="bicubic"), "upsample_mode"),
    (dict(head="segmentation", multiscale_output=False), "multiscale_output=True"),
    (dict(head="detection"), "head must be one of"),
    (dict(frozen_stages=7), "frozen_stages"),
])
def test_invalid_constructor_values_fail_at_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hrformer.create_model("hrformer_t", **kwargs)


def test_unknown_keyword_is_an_error():
    with pytest.raises(TypeError, match="create_model\\('hrformer_t'\\).*unexpected keyword.*num_clases"):
        hrformer.create_model("hrformer_t", num_clases=10)
    with pytest.raises(TypeError, match="pretrained must be True/False"):
        hrformer.create_model("hrformer_t", pretrained=None)
    with pytest.raises(ValueError, match="does not apply with features_only"):
        hrformer.create_model("hrformer_t", features_only=True, num_classes=5)


def test_out_indices_beyond_a_single_scale_pose_model_says_why():
    with pytest.raises(ValueError, match="single-scale last stage"):
        hrformer.create_model("hrformer_t", head="pose", features_only=True, out_indices=(0, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_input_dtype_mismatch_is_explained(dtype):
    model = hrformer.create_model("hrformer_t", head="pose").eval()
    with pytest.raises(TypeError, match="does not match the model's parameters.*autocast"):
        model(torch.randn(1, 3, 32, 32, dtype=dtype))


def test_mistyped_local_path_says_it_does_not_exist(tmp_path):
    for source in ("./nope", str(tmp_path / "missing"), "nope.safetensors", "a/b/c"):
        with pytest.raises(FileNotFoundError, match="no such file or directory"):
            hrformer.from_pretrained(source)


def test_bad_config_json_names_the_file_and_the_field(tmp_path):
    model = hrformer.create_model("hrformer_t", head="pose")
    hrformer.save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["config"]["window_size"] = -3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json.*window_size"):
        hrformer.from_pretrained(tmp_path)
    config["config"]["window_size"] = 7
    config["config"]["windowsize"] = 7
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json.*windowsize"):
        hrformer.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs", [
    dict(head="classification", num_classes=0, drop_rate=0.2, drop_path_rate=0.1, frozen_stages=1, norm_eval=True),
    dict(head="pose", num_keypoints=5, frozen_stages=0, in_chans=1, window_size=5, ffn_dw=False),
    dict(head=None, out_indices=(1, 3), drop_path_rate=0.3, shift_windows=True, mask_padding=True),
    dict(head="segmentation", num_classes=3, rel_pos_bias=False, upsample_mode="nearest"),
])
def test_every_constructor_argument_survives_a_save_and_reload(kwargs, tmp_path):
    model = hrformer.create_model("hrformer_t", **kwargs)
    hrformer.save_pretrained(model, tmp_path)
    loaded = hrformer.from_pretrained(tmp_path)
    assert loaded.model_kwargs() == model.model_kwargs()
    assert loaded.config == model.config
    assert loaded.pretrained_cfg == model.pretrained_cfg


def test_loaded_models_come_in_eval_mode_untrained_ones_in_train_mode(tmp_path):
    model = hrformer.create_model("hrformer_t", head="pose")
    assert model.training
    hrformer.save_pretrained(model, tmp_path)
    for loaded in (hrformer.from_pretrained(tmp_path),
                   hrformer.create_model("hrformer_t", head="pose", pretrained=tmp_path / "model.safetensors"),
                   hrformer.create_model(f"local-dir:{tmp_path}", pretrained=True)):
        assert not loaded.training


def test_head_declares_what_the_model_asks():
    for name, head_cls in hrformer.heads.HEADS.items():
        model = hrformer.create_model("hrformer_t", head=name, **{head_cls.output_arg: 4})
        assert model.get_classifier() is getattr(model.head, head_cls.classifier_name)
        model.reset_classifier(6)
        assert model.head.num_outputs == 6 and model.model_kwargs()[head_cls.output_arg] == 6

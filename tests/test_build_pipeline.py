"""The one build pipeline: what the weights imply, what the user asks, what is adapted (decided by
comparing the model with the checkpoint), and saved models that reload as saved through every entry
point. Bad files and configs fail before anything large is allocated."""

from __future__ import annotations

import json
import logging
import resource

import pytest
import torch

import hrformer
from hrformer.heads import HEADS
from hrformer.weights.loading import resize_rel_pos_table
from parity import original_state_dict

X = torch.randn(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))


def _out(model, x=X):
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (list, tuple)) else y


# --------------------------------------------------------------------------- adaptation by comparison
def test_named_w15_segmentation_model_from_window7_imagenet_weights(tmp_path, caplog):
    """The official segmentation code starts its w15 OCR models from the window-7 ImageNet weights:
    the architecture is named, not passed as window_size=15, and the tables are still resized."""
    sd = original_state_dict("official_cls_hrt_base")
    torch.save(sd, tmp_path / "hrt_base.pth")
    with caplog.at_level(logging.WARNING, logger="hrformer"):
        model = hrformer.create_model("hrformer_b_w15", head="ocr", num_classes=19,
                                      pretrained=str(tmp_path / "hrt_base.pth"))
    assert model.config.window_size == 15 and model.head_type == "ocr" and not model.training
    key = "stage3.hr_modules.2.branches.1.0.attn.relative_position_bias_table"
    original = sd["stage3.2.branches.1.0.attn.attn.relative_position_bias_table"]
    assert torch.equal(model.state_dict()[key], resize_rel_pos_table(original, 29 ** 2))
    assert torch.equal(model.state_dict()["stem.conv1.conv.weight"], sd["conv1.weight"])
    assert "relative position bias tables resized" in caplog.text and "head" in caplog.text


def test_other_differences_are_errors_naming_both_sides(tmp_path):
    torch.save(hrformer.create_model("hrformer_t").state_dict(), tmp_path / "t.pth")
    with pytest.raises(hrformer.CheckpointLayoutError, match=r"holds hrformer_t .*the model is hrformer_s"):
        hrformer.create_model("hrformer_s", pretrained=str(tmp_path / "t.pth"))


@pytest.mark.parametrize("head", [None, *HEADS])
def test_model_and_pretrained_cfg_agree_on_outputs(head):
    model = hrformer.create_model("hrformer_t", head=head)
    cfg = model.pretrained_cfg
    assert (cfg.num_classes, cfg.num_keypoints) == (model.num_classes, model.num_keypoints)
    assert cfg.model_kwargs["head"] == model.head_type


# --------------------------------------------------------------------------- saved models
def _distinct_model():
    """A model whose saved config matters: nearest fusion, masked padding, BGR input."""
    model = hrformer.create_model("hrformer_t", head="pose", upsample_mode="nearest", mask_padding=True).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    import dataclasses
    model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, channel_order="BGR", mean=(0.1, 0.2, 0.3))
    return model


def test_two_saves_into_one_folder_each_reload_as_saved(tmp_path):
    plain = hrformer.create_model("hrformer_t", head="pose").eval()
    distinct = _distinct_model()
    hrformer.save_pretrained(plain, tmp_path / "a.safetensors")
    hrformer.save_pretrained(distinct, tmp_path / "b.safetensors")
    for saved, name in ((plain, "a"), (distinct, "b")):
        loaded = hrformer.from_pretrained(tmp_path / f"{name}.safetensors")
        assert loaded.config == saved.config and loaded.pretrained_cfg.channel_order == saved.pretrained_cfg.channel_order
        torch.testing.assert_close(_out(loaded), _out(saved), rtol=0, atol=0)


def test_every_entry_point_reads_the_saved_config(tmp_path):
    model = _distinct_model()
    hrformer.save_pretrained(model, tmp_path / "saved")
    loaded = [
        hrformer.from_pretrained(tmp_path / "saved"),
        hrformer.create_model("hrformer_t", pretrained=str(tmp_path / "saved")),
        hrformer.create_model("hrformer_t", checkpoint_path=tmp_path / "saved" / "model.safetensors"),
        hrformer.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True),
    ]
    for m in loaded:
        assert m.config == model.config and m.pretrained_cfg.channel_order == "BGR"
        assert m.pretrained_cfg.mean == (0.1, 0.2, 0.3)
        torch.testing.assert_close(_out(m), _out(model), rtol=0, atol=0)
    with pytest.raises(hrformer.CheckpointLayoutError, match="not hrformer_s"):
        hrformer.create_model("hrformer_s", pretrained=str(tmp_path / "saved"))


def test_saves_never_write_into_the_working_directory_by_accident(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hrformer.InputError, match="empty path"):
        hrformer.save_pretrained(hrformer.create_model("hrformer_t"), "")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_leaves_the_previous_files(tmp_path, monkeypatch):
    import safetensors.torch

    first = hrformer.create_model("hrformer_t").eval()
    hrformer.save_pretrained(first, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        hrformer.save_pretrained(hrformer.create_model("hrformer_t", head="pose"), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no mix, no temporary left


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int64, torch.bool])
def test_non_float_weights_are_refused_naming_the_key(dtype, tmp_path):
    sd = hrformer.create_model("hrformer_t").state_dict()
    sd["stem.conv1.conv.weight"] = sd["stem.conv1.conv.weight"].to(dtype)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(hrformer.CheckpointLayoutError, match=r"stem\.conv1\.conv\.weight \(torch\.(int|uint|bool)"):
        hrformer.create_model("hrformer_t", pretrained=str(tmp_path / "w.pth"))


# --------------------------------------------------------------------------- bounded before allocation
def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_zero_stride_tables_are_refused_before_expanding(tmp_path):
    sd = original_state_dict("official_cls_hrt_tiny")
    key = "stage4.0.branches.0.0.attn.attn.relative_position_bias_table"
    sd[key] = torch.zeros(1, 8).expand(2**31, 8)  # 32 bytes on disk claiming 64 GiB
    torch.save(sd, tmp_path / "hostile.pth")
    before = _peak_rss_gb()
    with pytest.raises(hrformer.CheckpointReadError, match="zero or overlapping strides"):
        hrformer.from_original(tmp_path / "hostile.pth")
    assert _peak_rss_gb() - before < 1.0


@pytest.mark.parametrize("change, match", [
    ({"window_size": 200}, "window_size: exceeds"),
    ({"channels": [20000, 36, 72, 144]}, "channels: exceeds"),
    ({"blocks": 100000}, "blocks: exceeds"),
    ({"channels": [2048, 2048, 2048, 2048], "modules": [1, 16, 16, 16]}, "GiB of parameters"),
    ({"mlp_ratio": float("inf")}, "mlp_ratio: must be a finite number"),
    ({"mlp_ratio": 0.01}, "mlp_ratio: leaves the FFN"),
])
def test_saved_configs_out_of_bounds_fail_fast(tmp_path, change, match):
    hrformer.save_pretrained(hrformer.create_model("hrformer_t"), tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["config"].update(change)
    (tmp_path / "model.safetensors").unlink()  # the config alone: what a hostile folder may hold
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(hrformer.ConfigError, match=match):
        hrformer.create_model(f"local-dir:{tmp_path}")


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(config=None), "'config' must be a mapping"),
    (lambda d: d["pretrained_cfg"].update(keypoint_info={"names": ["a"], "flip_indices": [0], "sigmas": [1.0]}),
     "malformed entry"),
])
def test_malformed_saved_configs_are_config_errors(tmp_path, edit, match):
    hrformer.save_pretrained(hrformer.create_model("hrformer_t", head="pose"), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    data = json.loads((tmp_path / "config.json").read_text())
    edit(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(hrformer.ConfigError, match=match):
        hrformer.create_model(f"local-dir:{tmp_path}")


@pytest.mark.parametrize("damage", ["drop_fc1", "empty_conv1", "odd_table"])
def test_malformed_original_checkpoints_are_layout_errors(damage, tmp_path):
    sd = original_state_dict("official_cls_hrt_tiny")
    if damage == "drop_fc1":
        del sd["stage2.0.branches.0.0.mlp.fc1.weight"]
    elif damage == "empty_conv1":
        sd["conv1.weight"] = torch.zeros(0, 3, 3, 3)
    else:
        sd["stage4.0.branches.0.0.attn.attn.relative_position_bias_table"] = torch.zeros(170, 8)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(hrformer.CheckpointLayoutError):
        hrformer.from_original(tmp_path / "bad.pth")


def test_saved_files_get_the_umask_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        weights, config = hrformer.save_pretrained(hrformer.create_model("hrformer_t"), tmp_path / "saved")
    finally:
        os.umask(umask)
    assert {weights.stat().st_mode & 0o777, config.stat().st_mode & 0o777} == {0o644}


def test_a_cached_original_download_is_checked_against_the_hash_in_its_name(tmp_path):
    import hashlib

    from hrformer.weights.hub import download_url

    good = b"weights"
    prefix = hashlib.sha256(good).hexdigest()[:8]
    url = f"http://127.0.0.1:9/release/model-{prefix}_20220316.pth"  # never contacted: the file is cached
    cached = tmp_path / f"model-{prefix}_20220316.pth"
    cached.write_bytes(good)
    assert download_url(url, tmp_path) == str(cached)
    cached.write_bytes(b"tampered")
    with pytest.raises(hrformer.WeightsUnavailableError, match=f"does not match the sha256 .*{prefix}"):
        download_url(url, tmp_path)


def test_a_saved_model_with_changed_options_loads_under_its_architecture_name(tmp_path):
    model = hrformer.create_model("hrformer_t", head="pose", window_size=5).eval()
    hrformer.save_pretrained(model, tmp_path)
    loaded = hrformer.create_model("hrformer_t", pretrained=str(tmp_path))
    assert loaded.config.window_size == 5
    torch.testing.assert_close(_out(loaded), _out(model), rtol=0, atol=0)

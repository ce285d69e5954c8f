"""``model.pretrained_cfg`` as a read-only mapping (timm-like) and ``hrformer.resolve_data_config``."""

from __future__ import annotations

import pytest

import hrformer
from hrformer.weights.pretrained import IMAGENET_MEAN, IMAGENET_STD

DATA_KEYS = {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode", "channel_order"}


@pytest.fixture(scope="module")
def pose_model():
    return hrformer.create_model("hrformer_t", head="pose", num_keypoints=17)


def test_pretrained_cfg_is_a_read_only_mapping():
    model = hrformer.create_model("hrformer_s.coco_256x192")  # the tag's architecture, no weights
    cfg = model.pretrained_cfg
    assert cfg["mean"] == IMAGENET_MEAN and cfg["std"] == IMAGENET_STD
    assert tuple(cfg["input_size"]) == (3, 256, 192)
    assert cfg.get("crop_pct") == cfg["crop_pct"] and cfg.get("no such key", "x") == "x"
    as_dict = dict(cfg)
    assert as_dict["mean"] == cfg["mean"] and DATA_KEYS <= set(as_dict) and "num_classes" in as_dict
    with pytest.raises(KeyError):
        cfg["no such key"]
    with pytest.raises(TypeError):
        cfg["mean"] = (0.5, 0.5, 0.5)  # read-only


def test_bare_architecture_gets_its_default_tags_cfg():
    model = hrformer.create_model("hrformer_s")
    default = hrformer.get_pretrained_cfg("hrformer_s")
    assert model.pretrained_cfg["tag"] == default["tag"] == "in1k"
    assert dict(model.pretrained_cfg) == dict(default)
    assert model.pretrained_cfg["crop_pct"] == default["crop_pct"]


def test_model_without_a_tag_of_its_head_gets_the_heads_usual_input(pose_model):
    cfg = pose_model.pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 256, 192) and cfg["mean"] == IMAGENET_MEAN


@pytest.mark.parametrize("name", ["hrformer_t", "hrformer_s.coco_384x288", "hrformer_t.in1k"])
def test_resolve_data_config(name):
    model = hrformer.create_model(name, features_only=name.endswith("in1k"))
    data = hrformer.resolve_data_config(model)
    assert set(data) == DATA_KEYS
    assert data["mean"] == model.pretrained_cfg["mean"] and data["std"] == model.pretrained_cfg["std"]
    assert tuple(data["input_size"]) == tuple(model.pretrained_cfg["input_size"])
    if name.endswith("384x288"):
        assert tuple(data["input_size"]) == (3, 384, 288)

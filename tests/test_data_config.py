"""``model.pretrained_cfg`` as a read-only mapping (timm-like) and ``hrformer.resolve_data_config``."""

from __future__ import annotations

import pytest

import hrformer
from hrformer.data_config import IMAGENET_MEAN, IMAGENET_STD

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


# --------------------------------------------------------------------------- the one resolver
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from hrformer import data_config  # noqa: E402
from hrformer.config import HRFORMER_T  # noqa: E402
from hrformer.errors import InputError  # noqa: E402
from hrformer.heads import HEADS  # noqa: E402

SRC = Path(data_config.__file__).resolve().parent
TINY = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)


@pytest.mark.parametrize("head", [None, *HEADS])
def test_a_model_without_pretrained_cfg_gets_its_heads_defaults(head):
    model = hrformer.HRFormer(TINY, head=head)
    assert not hasattr(model, "pretrained_cfg")
    cfg = data_config.resolve_data_config(model)
    size = HEADS[head].default_input_size if head else data_config.DEFAULT_INPUT_SIZE
    assert cfg["input_size"] == (3, *size)
    assert cfg["crop_pct"] == (HEADS[head].crop_pct if head else 1.0)
    assert (cfg["mean"], cfg["std"], cfg["channel_order"]) == (IMAGENET_MEAN, IMAGENET_STD, "RGB")


def test_args_then_pretrained_cfg_then_head(pose_model):
    pretrained = {"input_size": (3, 384, 288), "mean": (0.5, 0.5, 0.5), "channel_order": "bgr", "test_size": (96, 64)}
    cfg = data_config.resolve_data_config({"std": [0.2]}, pretrained_cfg=pretrained, model=pose_model)
    assert cfg["input_size"] == (3, 384, 288) and cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.2,) * 3
    assert cfg["channel_order"] == "BGR" and cfg["crop_pct"] == 1.0 and cfg["interpolation"] == "bilinear"
    tested = data_config.resolve_data_config(pretrained_cfg=pretrained, use_test_size=True)
    assert tested["input_size"] == (3, 96, 64)
    for bad, match in (({"channel_order": "RBG"}, "channel_order"), ({"crop_pct": 1.5}, "crop_pct"),
                       ({"input_size": (3, 0, 8)}, "input_size"), ({"mean": (0.1, 0.2)}, "2 values for 3")):
        with pytest.raises(InputError, match=match):
            data_config.resolve_data_config(bad, model=pose_model)


def test_the_model_decides_its_channels_and_the_statistics_follow():
    gray = hrformer.HRFormer(TINY, head="classification", in_chans=1)
    gray.pretrained_cfg = hrformer.get_pretrained_cfg("hrformer_t.in1k")  # (3, 224, 224), RGB statistics
    cfg = data_config.resolve_data_config(gray)
    assert cfg["input_size"] == (1, 224, 224)
    assert cfg["mean"] == (sum(IMAGENET_MEAN) / 3,) and cfg["std"] == (sum(IMAGENET_STD) / 3,)
    wrapped = torch.nn.DataParallel(gray)
    assert data_config.resolve_data_config(wrapped) == cfg


def test_the_resolver_is_a_leaf():
    """The factory, the weight registry and the predicts all import it: it imports none of them."""
    tree = ast.parse((SRC / "data_config.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert imported == {"errors"}


def test_public_name_is_the_resolver():
    assert hrformer.resolve_data_config is data_config.resolve_data_config


def test_imagenet_statistics_are_written_once():
    literal = "0.485, 0.456, 0.406"
    holders = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if literal in p.read_text()]
    assert holders == ["data_config.py"]

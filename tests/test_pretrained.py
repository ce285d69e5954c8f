"""The pretrained-weight registry, the original-release download path (a local HTTP server: download,
sha256 check, conversion, parity), and how weights are fitted to a model with another head or
``in_chans``. No network: the Hub lookup is replaced where a test needs it to miss."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import hrformer
from hrformer.weights import loading as weights, pretrained
from hrformer.weights.hub import WeightsUnavailableError, hash_prefix_in_name
from hrformer.weights.pretrained import PretrainedCfg
from parity import X, assert_parity, mmpose_0x_release, original_state_dict

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "hrformer_reference.json"


def state_equal(a: torch.nn.Module, b: torch.nn.Module, skip: str = "\0") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in sa.items() if not k.startswith(skip))


@pytest.fixture
def registered(monkeypatch):
    """Register a PretrainedCfg for the duration of one test."""
    def register(cfg: PretrainedCfg) -> PretrainedCfg:
        monkeypatch.setitem(pretrained._PRETRAINED, cfg.name, cfg)
        return cfg
    return register


# --------------------------------------------------------------------------- the registry
def test_list_models_pretrained_lists_tags():
    names = hrformer.list_models(pretrained=True)
    assert {"hrformer_t.in1k", "hrformer_s.in1k", "hrformer_b.in1k", "hrformer_s.coco_256x192",
            "hrformer_b.coco_384x288", "hrformer_s.coco_256x192_official", "hrformer_b.in1k_mmpose"} <= set(names)
    assert hrformer.list_models("hrformer_b.coco_[0-9]*", pretrained=True) == [
        "hrformer_b.coco_256x192", "hrformer_b.coco_256x192_official",
        "hrformer_b.coco_384x288", "hrformer_b.coco_384x288_official"]
    assert "hrformer_s" in hrformer.list_models()  # architectures are still listed without tags


def test_bare_name_picks_default_tag_and_unknown_tag_is_explained():
    assert hrformer.get_pretrained_cfg("hrformer_s").name == "hrformer_s.in1k"
    with pytest.raises(ValueError, match="hrformer_s.coco_256x192"):
        hrformer.create_model("hrformer_s.coco_999x999")
    with pytest.raises(ValueError, match="no pretrained weights"):
        hrformer.create_model("hrformer_t_hrnet", pretrained=True)


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference not present")
def test_registry_has_every_released_mmpose_checkpoint():
    released = json.loads(REFERENCE.read_text())["released_weights"]
    coco = released["mmpose_coco_topdown"]
    for key, (file, ap) in coco["files"].items():
        arch, size = key.rsplit("_", 1)
        cfg = hrformer.get_pretrained_cfg(arch, f"coco_{size}")
        assert cfg.url == coco["url_prefix"] + file
        assert cfg.metrics["coco_val2017_ap"] == pytest.approx(100 * ap)
        assert cfg.layout == "mmpose" and cfg.verified and cfg.license == "apache-2.0"
        assert cfg.input_size == (3, *map(int, size.split("x")))
        assert cfg.model_kwargs == dict(head="pose", num_keypoints=17, rel_pos_bias=True, upsample_mode="bilinear",
                                        multiscale_output=False)
    backbones = {c.url: c for c in map(pretrained._PRETRAINED.get, hrformer.list_models("*in1k_mmpose", True))}
    assert set(backbones) == set(released["mmpose_imagenet_backbones"])
    assert not any(c.verified for c in backbones.values())
    for arch, top1 in released["imagenet_top1_published"].items():
        cfg = hrformer.get_pretrained_cfg(arch, "in1k")
        assert cfg.metrics["imagenet_top1"] == top1 and cfg.layout == "official_cls"


def test_tag_builds_the_model_its_weights_need():
    cls = hrformer.create_model("hrformer_t.in1k")
    assert cls.head_type == "classification" and cls.config.upsample_mode == "nearest"
    mm = hrformer.create_model("hrformer_s.coco_256x192", num_keypoints=5)
    assert (mm.head_type, mm.num_keypoints, mm.config.rel_pos_bias, mm.config.upsample_mode, mm.config.multiscale_output) == (
        "pose", 5, True, "bilinear", False)
    assert mm.pretrained_cfg.name == "hrformer_s.coco_256x192"
    official = hrformer.create_model("hrformer_s.coco_256x192_official")
    assert not official.config.rel_pos_bias


def test_pretrained_cfg_dict_round_trip():
    cfg = hrformer.get_pretrained_cfg("hrformer_b", "coco_384x288")
    assert PretrainedCfg.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name, prefix", [
    ("hrformer_small_coco_256x192-5310d898_20220316.pth", "5310d898"),
    ("resnet18-5c106cde.pth", "5c106cde"),
    ("hrt_small.pth", None),
    ("model-final.pth", None),
])
def test_hash_prefix_in_name(name, prefix):
    assert hash_prefix_in_name(name) == prefix


# --------------------------------------------------------------------------- original release URL
@pytest.fixture
def http_server():
    """Serves ``files`` (name -> bytes) on 127.0.0.1; records the paths requested."""
    files, requests = {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = files.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.files, server.requests, server.url = files, requests, f"http://127.0.0.1:{server.server_port}/"
    yield server
    server.shutdown()
    server.server_close()


def serve_original(server, tmp_path, hash_prefix=None) -> str:
    path = tmp_path / "release.pth"
    torch.save(mmpose_0x_release(original_state_dict("mmpose_pose_hrformer_tiny")), path)
    data = path.read_bytes()
    name = f"hrformer_tiny_coco_256x192-{hash_prefix or hashlib.sha256(data).hexdigest()[:8]}_20220316.pth"
    server.files[name] = data
    return server.url + name


def original_cfg(url: str) -> PretrainedCfg:
    return PretrainedCfg("hrformer_t", "coco_test", dict(pretrained._MMPOSE_POSE), hf_hub_id="hrformer/hrformer_t.coco_test",
                         url=url, layout="mmpose", input_size=(3, 256, 192))


@pytest.fixture
def hub_misses(monkeypatch):
    """The Hub repositories do not exist (today's state); records the lookups."""
    calls = []

    def missing(repo_id, filename="model.safetensors", revision=None, cache_dir=None):
        calls.append(repo_id)
        raise WeightsUnavailableError(f"Hugging Face Hub {repo_id}, file {filename}: the repository does not exist")

    monkeypatch.setattr(weights, "download_hub_file", missing)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return calls


def test_original_url_downloaded_hash_checked_converted(http_server, hub_misses, registered, tmp_path, monkeypatch):
    cfg = registered(original_cfg(serve_original(http_server, tmp_path)))
    cache = tmp_path / "cache"
    model = hrformer.create_model(cfg.name, pretrained=True, cache_dir=cache)
    assert hub_misses == ["hrformer/hrformer_t.coco_test"]  # the Hub is asked first
    assert_parity(model, "mmpose_pose_hrformer_tiny", "224x160")
    assert [p.name for p in cache.iterdir()] == [cfg.url.rsplit("/", 1)[1]]
    # cached: a second load does not download again, and works offline
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    again = hrformer.create_model(cfg.name, pretrained=True, cache_dir=cache)
    assert len(http_server.requests) == 1 and state_equal(model, again)


def test_original_url_with_wrong_hash_fails_and_keeps_nothing(http_server, hub_misses, registered, tmp_path):
    cfg = registered(original_cfg(serve_original(http_server, tmp_path, hash_prefix="deadbeef")))
    cache = tmp_path / "cache"
    with pytest.raises(WeightsUnavailableError, match="sha256 mismatch") as e:
        hrformer.create_model(cfg.name, pretrained=True, cache_dir=cache)
    assert "deadbeef" in str(e.value) and "the repository does not exist" in str(e.value)
    assert list(cache.iterdir()) == []


def test_original_url_unreachable(hub_misses, registered, tmp_path):
    cfg = registered(original_cfg("http://127.0.0.1:9/hrformer_tiny-0123abcd.pth"))
    with pytest.raises(WeightsUnavailableError, match="download failed") as e:
        hrformer.create_model(cfg.name, pretrained=True, cache_dir=tmp_path)
    assert "pretrained='path/to/checkpoint'" in str(e.value)


# --------------------------------------------------------------------------- fitting to the model
@pytest.fixture(scope="module")
def cls_file(tmp_path_factory):
    """A classification checkpoint in our layout and the model that wrote it."""
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t").eval()
    path = tmp_path_factory.mktemp("ckpt") / "cls.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_num_classes_change_drops_only_the_classifier(cls_file, caplog):
    source, path = cls_file
    with caplog.at_level(logging.INFO, logger="hrformer"):
        model = hrformer.create_model("hrformer_t", pretrained=path, num_classes=10)
    assert model.get_classifier().out_features == 10
    assert state_equal(source, model, skip="head.fc.")
    assert not torch.equal(model.head.fc.weight[:10], source.head.fc.weight[:10])
    assert "head.fc has 10 outputs, the checkpoint's 1000" in caplog.text


@pytest.mark.parametrize("kwargs", [dict(head=None), dict(features_only=True), dict(head="pose")])
def test_other_head_loads_the_backbone_only(cls_file, caplog, kwargs):
    source, path = cls_file
    with caplog.at_level(logging.INFO, logger="hrformer"):
        model = hrformer.create_model("hrformer_t", pretrained=path, **kwargs)
    own = model.state_dict()
    loaded = {k: v for k, v in source.state_dict().items() if k in own and not k.startswith("head.")}
    assert all(torch.equal(own[k], v) for k, v in loaded.items())
    assert "head" in caplog.text
    if kwargs.get("head") == "pose":  # a single-scale model: the stride 8-32 fusion of stage 4 is not needed
        assert "fusion tensors for the stride 8-32 outputs not loaded" in caplog.text


def test_in_chans_1_sums_the_first_conv(cls_file, caplog):
    source, path = cls_file
    with caplog.at_level(logging.INFO, logger="hrformer"):
        gray = hrformer.create_model("hrformer_t", pretrained=path, in_chans=1).eval()
    assert "first convolution adapted from 3 to 1 input channels" in caplog.text
    assert state_equal(source, gray, skip="stem.conv1.conv.weight")
    x = X[:, :1]
    with torch.no_grad():  # a gray image through the summed conv == the same image as RGB through the original
        torch.testing.assert_close(gray(x), source(x.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)


def test_in_chans_4_repeats_and_rescales_the_first_conv(cls_file):
    source, path = cls_file
    model = hrformer.create_model("hrformer_t", pretrained=path, in_chans=4)
    w, w4 = source.stem.conv1.conv.weight, model.stem.conv1.conv.weight
    assert w4.shape[1] == 4
    torch.testing.assert_close(w4[:, :3], w * 0.75)
    torch.testing.assert_close(w4[:, 3], w[:, 0] * 0.75)
    assert state_equal(source, model, skip="stem.conv1.conv.weight")


def test_original_layout_with_other_semantics_warns(tmp_path, caplog):
    path = tmp_path / "official_cls.pth"
    torch.save(original_state_dict("official_cls_hrt_tiny"), path)
    with caplog.at_level(logging.WARNING, logger="hrformer"):
        hrformer.create_model("hrformer_t", pretrained=path, upsample_mode="bilinear")
    assert "upsample_mode='nearest' (model: 'bilinear')" in caplog.text


def test_pretrained_takes_a_tag_or_an_existing_path(monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"nor a tag of hrformer_t \(tags: in1k\)"):
        hrformer.create_model("hrformer_t", pretrained="no_such_file.pth")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match="hrformer_t.in1k"):  # the tag's weights, as hrformer_t.in1k
        hrformer.create_model("hrformer_t", pretrained="in1k")
    with pytest.raises(ValueError, match="two tags"):
        hrformer.create_model("hrformer_s.in1k", pretrained="coco_256x192")

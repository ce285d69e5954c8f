"""The Hugging Face Hub path through the real ``hf_hub_download`` on a cache built in ``tmp_path``
(offline mode: no network), revision pinning, the offline error, our ``save_pretrained`` /
``from_pretrained`` round trip, and ``push_to_hub`` with the upload mocked."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, constants
from safetensors.torch import save_file

import hrformer
from hrformer.weights import pretrained
from hrformer.weights.pretrained import PretrainedCfg
from parity import X, original_state_dict

MAIN, PINNED = "a" * 40, "b" * 40


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def hf_cache(cache: Path, repo_id: str, snapshots: dict, main: str = MAIN) -> Path:
    """The layout ``hf_hub_download`` reads: ``models--org--name/refs/main`` and ``snapshots/<sha>/<file>``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(main)
    for sha, files in snapshots.items():
        (repo / "snapshots" / sha).mkdir(parents=True)
        for name, src in files.items():
            shutil.copy(src, repo / "snapshots" / sha / name)
    return cache


def random_model(seed: int, **kwargs) -> hrformer.HRFormer:
    torch.manual_seed(seed)
    return hrformer.create_model("hrformer_t", **kwargs).eval()


def outputs(model):
    with torch.no_grad():
        return model.eval()(X)


def assert_same_outputs(a, b):
    oa, ob = outputs(a), outputs(b)
    for x, y in zip(oa if isinstance(oa, list) else [oa], ob if isinstance(ob, list) else [ob]):
        assert torch.equal(x, y)


@pytest.fixture
def hub_cfg(monkeypatch):
    cfg = PretrainedCfg("hrformer_t", "hubtest", dict(pretrained._MMPOSE_POSE), hf_hub_id="hrformer/hrformer_t.hubtest",
                        layout="mmpose")
    monkeypatch.setitem(pretrained._PRETRAINED, cfg.name, cfg)
    return cfg


def weights_file(model, path: Path) -> Path:
    save_file(model.state_dict(), str(path))
    return path


# --------------------------------------------------------------------------- Hub, offline
def test_import_touches_no_network():
    code = ("import socket\n"
            "def refuse(*args, **kwargs):\n    raise AssertionError('network access at import')\n"
            "socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse\n"
            "import hrformer, hrformer.cli\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_pretrained_from_hub_cache_offline(hub_cfg, offline, tmp_path):
    main = random_model(0, **hub_cfg.model_kwargs)
    cache = hf_cache(tmp_path / "hub", hub_cfg.hf_hub_id, {MAIN: {"model.safetensors": weights_file(main, tmp_path / "w.st")}})
    model = hrformer.create_model(hub_cfg.name, pretrained=True, cache_dir=cache)
    assert_same_outputs(model, main)
    assert model.pretrained_cfg == hub_cfg


def test_hub_revision_pin(hub_cfg, offline, tmp_path):
    main, pinned = random_model(0, **hub_cfg.model_kwargs), random_model(1, **hub_cfg.model_kwargs)
    cache = hf_cache(tmp_path / "hub", hub_cfg.hf_hub_id, {
        MAIN: {"model.safetensors": weights_file(main, tmp_path / "main.st")},
        PINNED: {"model.safetensors": weights_file(pinned, tmp_path / "pinned.st")},
    })
    assert_same_outputs(hrformer.create_model(hub_cfg.name, pretrained=True, cache_dir=cache, revision=PINNED), pinned)
    assert_same_outputs(hrformer.create_model(hub_cfg.name, pretrained=True, cache_dir=cache), main)


def test_offline_and_not_cached_error_names_repo_file_and_local_alternative(offline, tmp_path):
    with pytest.raises(hrformer.WeightsUnavailableError) as e:
        hrformer.create_model("hrformer_s.in1k", pretrained=True, cache_dir=tmp_path)
    msg = str(e.value)
    assert "hrformer/hrformer_s.in1k, file model.safetensors" in msg
    assert "not in the local cache, and offline mode is on" in msg
    assert "https://1drv.ms/" in msg  # where the original can be fetched by hand
    assert "create_model('hrformer_s.in1k', pretrained='path/to/checkpoint')" in msg
    assert "pytorch_model.bin" not in msg


def test_offline_original_url_is_not_downloaded(offline, tmp_path):
    with pytest.raises(hrformer.WeightsUnavailableError) as e:
        hrformer.create_model("hrformer_s.coco_256x192", pretrained=True, cache_dir=tmp_path)
    msg = str(e.value)
    assert "hrformer_small_coco_256x192-5310d898_20220316.pth: not downloaded yet" in msg
    assert "The machine is offline" in msg and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- save / load / push
ROUND_TRIPS = {
    "classification": dict(num_classes=7, upsample_mode="bilinear"),
    "pose": dict(head="pose", num_keypoints=5, rel_pos_bias=False, multiscale_output=True),
    "segmentation": dict(head="segmentation", num_classes=3, mask_padding=True),
    "none": dict(head=None, out_indices=(1, 3)),
}


@pytest.mark.parametrize("head", ROUND_TRIPS)
def test_save_pretrained_from_pretrained_round_trip(head, tmp_path):
    model = random_model(0, **ROUND_TRIPS[head])
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
    hrformer.save_pretrained(model, tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["config.json", "model.safetensors"]
    for loaded in (hrformer.from_pretrained(tmp_path / "saved"),
                   hrformer.create_model(f"local-dir:{tmp_path / 'saved'}", pretrained=True)):
        assert loaded.model_kwargs() == model.model_kwargs() and loaded.config == model.config
        assert loaded.out_indices == model.out_indices
        assert_same_outputs(loaded, model)


def test_local_dir_without_pretrained_is_architecture_only(tmp_path):
    model = random_model(0, head="pose")
    hrformer.save_pretrained(model, tmp_path)
    fresh = hrformer.create_model(f"local-dir:{tmp_path}")
    assert fresh.model_kwargs() == model.model_kwargs()
    assert not torch.equal(fresh.head.conv.weight, model.head.conv.weight)


def test_config_json_keeps_the_pretrained_cfg(tmp_path):
    model = hrformer.create_model("hrformer_s.coco_256x192")
    hrformer.save_pretrained(model, tmp_path / "w.safetensors")  # a .safetensors path: config.json beside it
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "hrformer_s" and config["model_kwargs"]["head"] == "pose"
    assert config["pretrained_cfg"]["url"].endswith("-5310d898_20220316.pth")
    assert hrformer.from_pretrained(tmp_path / "w.safetensors").pretrained_cfg == model.pretrained_cfg


def test_from_pretrained_hub_repo_offline_with_revision(offline, tmp_path):
    main, pinned = random_model(0, head="pose"), random_model(1, head="pose")
    hrformer.save_pretrained(main, tmp_path / "main")
    hrformer.save_pretrained(pinned, tmp_path / "pinned")
    files = {name: tmp_path / "{}" / name for name in ("model.safetensors", "config.json")}
    cache = hf_cache(tmp_path / "hub", "someone/my-hrformer", {
        MAIN: {n: str(p).format("main") for n, p in files.items()},
        PINNED: {n: str(p).format("pinned") for n, p in files.items()},
    })
    assert_same_outputs(hrformer.from_pretrained("someone/my-hrformer", cache_dir=cache), main)
    assert_same_outputs(hrformer.create_model(f"hf-hub:someone/my-hrformer@{PINNED}", pretrained=True,
                                              cache_dir=cache), pinned)
    with pytest.raises(hrformer.WeightsUnavailableError, match="save_pretrained from disk"):
        hrformer.from_pretrained("someone/not-cached", cache_dir=cache)


def test_push_to_hub_publishes_the_saved_files(monkeypatch, tmp_path):
    model = hrformer.create_model("hrformer_t.in1k")
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = repo_id

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        calls["upload"] = repo_id
        shutil.copytree(folder_path, tmp_path / "uploaded")
        return "commit-info"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    assert hrformer.push_to_hub(model, "hrformer/hrformer_t.in1k") == "commit-info"
    assert calls == {"create_repo": "hrformer/hrformer_t.in1k", "upload": "hrformer/hrformer_t.in1k"}
    uploaded = tmp_path / "uploaded"
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    hrformer.save_pretrained(model, tmp_path / "saved")
    assert (uploaded / "config.json").read_text() == (tmp_path / "saved" / "config.json").read_text()
    assert_same_outputs(hrformer.from_pretrained(uploaded), model)
    assert "license: mit" in (uploaded / "README.md").read_text()


# --------------------------------------------------------------------------- the maintainer script
@pytest.fixture
def publish_script():
    path = Path(__file__).resolve().parents[1] / "scripts" / "publish_weights.py"
    spec = importlib.util.spec_from_file_location("publish_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_script_converts_checks_and_pushes(publish_script, hub_cfg, monkeypatch, tmp_path, capsys):
    original = tmp_path / "release.pth"
    torch.save({"state_dict": original_state_dict("official_pose_hrt_tiny")}, original)
    pushed = []
    monkeypatch.setattr(hrformer, "push_to_hub", lambda model, repo_id, **kw: pushed.append((repo_id, kw)))
    args = [hub_cfg.name, "--file", f"{hub_cfg.name}={original}", "--out", str(tmp_path / "out")]

    # the registry entry says mmpose semantics, the file is an official pose model: refused
    assert publish_script.main(args) == 1
    err = capsys.readouterr().err
    assert "layout 'official_pose', registry says 'mmpose'" in err and "rel_pos_bias=False" in err

    fixed = PretrainedCfg.from_dict({**hub_cfg.to_dict(), "layout": "official_pose",
                                     "model_kwargs": dict(pretrained._OFFICIAL_POSE)})
    monkeypatch.setitem(pretrained._PRETRAINED, fixed.name, fixed)
    assert publish_script.main(args + ["--push"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / fixed.name).iterdir()) == ["config.json", "model.safetensors"]
    assert pushed == [(fixed.hf_hub_id, {"pretrained_cfg": fixed, "commit_message": f"{fixed.name}: converted from release.pth"})]
    reference = hrformer.from_original(original)
    assert_same_outputs(hrformer.from_pretrained(tmp_path / "out" / fixed.name), reference)

"""Checkpoint files users hold, loaded in one call: safetensors, ``.pth``/``.pt``/``.bin`` in our,
official and mmpose layouts with their wrappers; unsafe pickles refused; broken files load nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import hrformer
from hrformer.weights import convert_original
from parity import assert_parity, mmpose_0x_release, original_state_dict, same_tensors, split_name

def _run_code(path: str) -> None:
    Path(path).write_text("unpickling ran code")


class RunsCodeWhenUnpickled:
    """Unpickling this calls ``_run_code``: what a malicious checkpoint would do."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return _run_code, (str(self.sentinel),)


# file -> (parity variant, how the released file wraps its weights)
LAYOUTS = {
    "official_cls/plain.pth": ("official_cls_hrt_tiny", lambda sd: sd),
    "official_cls/model.pt": ("official_cls_hrt_tiny", lambda sd: {"model": sd, "epoch": 300, "max_accuracy": 78.6}),
    "official_pose/module.bin": (
        "official_pose_hrt_tiny", lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}}),
    "mmpose_0x/meta.pth": (
        "mmpose_pose_hrformer_tiny",
        lambda sd: mmpose_0x_release(sd, meta={"hook_msgs": {"best_score": np.float64(0.738)}, "seed": np.int64(0),
                                               "mean": np.array([0.485, 0.456, 0.406])})),
    "mmpose_1x/ema.pth": (
        "mmpose_pose_hrformer_tiny",
        lambda sd: {"state_dict": {k: torch.zeros_like(v) for k, v in sd.items()}, "state_dict_ema": sd}),
}


@pytest.mark.parametrize("case", LAYOUTS)
def test_original_layouts_with_wrappers_load_in_one_call(case, tmp_path):
    variant, wrap = LAYOUTS[case]
    sd = original_state_dict(variant)
    reference = hrformer.from_original(sd)
    path = tmp_path / case.replace("/", "_")
    torch.save(wrap(sd), path)

    loaded = hrformer.from_original(path)
    _, kwargs = convert_original(sd)
    kwargs = {k: v for k, v in kwargs.items() if k not in ("name", "layout")}
    via_create = hrformer.create_model(split_name(variant)[1], pretrained=path, **kwargs)
    for model in (loaded, via_create):
        assert same_tensors(reference.state_dict(), model.state_dict())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_our_own_layout(suffix, tmp_path):
    torch.manual_seed(0)
    model = hrformer.create_model("hrformer_t", head="pose")
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(model.state_dict(), str(path))
    else:
        torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    loaded = hrformer.create_model("hrformer_t", head="pose", checkpoint_path=path)
    assert same_tensors(model.state_dict(), loaded.state_dict())


def test_pickle_that_needs_code_is_refused_and_runs_nothing(tmp_path):
    path, sentinel = tmp_path / "evil.pth", tmp_path / "code-ran"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": RunsCodeWhenUnpickled(sentinel)}, path)
    with pytest.raises(hrformer.CheckpointReadError, match="refused as unsafe, unpickling it would run Python code") as e:
        hrformer.create_model("hrformer_t", pretrained=path)
    assert "_run_code" in str(e.value) and "weights_only=True" in str(e.value)
    assert "weights_only=False" not in str(e.value)  # not torch's advice to run the code
    assert not sentinel.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file_fails_cleanly_and_loads_nothing(suffix, tmp_path):
    torch.manual_seed(0)
    source = hrformer.create_model("hrformer_t")
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    torch.manual_seed(1)
    model = hrformer.create_model("hrformer_t")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(hrformer.CheckpointReadError, match="corrupt or truncated"):
        hrformer.load_weights(model, path)
    assert same_tensors(before, model.state_dict())


def test_mismatching_checkpoint_loads_nothing(tmp_path):
    torch.manual_seed(0)
    sd = hrformer.create_model("hrformer_t").state_dict()
    del sd["stage3.hr_modules.0.branches.1.0.norm1.bias"]
    model = hrformer.create_model("hrformer_t")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(hrformer.CheckpointLayoutError, match="1 missing keys: stage3.hr_modules.0.branches.1.0.norm1"):
        hrformer.load_weights(model, sd)
    assert same_tensors(before, model.state_dict())


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        hrformer.create_model("hrformer_t", pretrained="does/not/exist.pth")

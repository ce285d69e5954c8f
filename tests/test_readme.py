"""The README's examples run as written, offline, in a temporary directory: every ```python block
of a section, in order, in one namespace. A block whose first line starts with ``# network`` is
skipped (it needs downloads or files fetched by hand). Task examples get small untrained models of
the named architecture (same shapes); the weights sections run on files made from the parity
weights."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import torch

import hrformer

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(title: str) -> List[str]:
    """The ```python blocks of the README section ``## title``."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def run_section(title: str, tmp_path, monkeypatch, shrink_input: bool = False, small: bool = True,
                namespace: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run the section's blocks in ``tmp_path``, offline. With ``small``, ``create_model`` gives the
    named architecture with one module per stage and one block, untrained, in eval mode
    (``shrink_input``: a quarter of the tag's input pixels). ``namespace`` carries on an earlier
    section's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if small:
        create: Callable[..., hrformer.HRFormer] = hrformer.create_model

        def untrained(name, *args, pretrained=False, **kwargs):
            model = create(name, *args, modules=(1, 1, 1, 1), blocks=1, **kwargs).eval()
            if shrink_input:
                c, h, w = model.pretrained_cfg.input_size
                model.pretrained_cfg = dataclasses.replace(model.pretrained_cfg, input_size=(c, h // 2, w // 2))
            return model

        monkeypatch.setattr(hrformer, "create_model", untrained)
    blocks = [b for b in section_blocks(title) if not b.lstrip().startswith("# network")]
    assert blocks, f"no runnable python example in README section {title!r}"
    namespace = {} if namespace is None else namespace
    for i, block in enumerate(blocks):
        exec(compile(block, f"README {title} block {i}", "exec"), namespace)
    return namespace


def test_quick_start_runs_offline(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    namespace = run_section("Quick start", tmp_path, monkeypatch)
    assert tuple(namespace["heatmaps"].shape) == (2, 17, 64, 48)
    assert tuple(namespace["logits"].shape) == (1, 1000)
    assert (tmp_path / "hrformer_t_pose.onnx").exists()


def test_weights_sections_run_on_local_files(tmp_path, monkeypatch):
    """'Pretrained weights' and 'Loading the original checkpoints' as written, on files made from the
    parity weights (official HRFormer-T classifier, mmpose HRFormer-S pose model)."""
    from parity import original_state_dict

    torch.save({"model": original_state_dict("official_cls_hrt_tiny")}, tmp_path / "hrt_tiny.pth")
    torch.save({"state_dict": original_state_dict("mmpose_pose_hrformer_small")},
               tmp_path / "hrformer_small_coco_256x192-5310d898_20220316.pth")
    namespace = run_section("Pretrained weights", tmp_path, monkeypatch, small=False)
    assert namespace["data"]["interpolation"] == "bicubic" and namespace["tuned"].num_classes == 10
    assert namespace["pose"].head_type == "pose" and namespace["gray"].in_chans == 1
    assert namespace["backbone"].head is None and (tmp_path / "my-hrformer" / "config.json").exists()
    namespace = run_section("Loading the original checkpoints", tmp_path, monkeypatch, small=False,
                            namespace=namespace)
    assert namespace["model"].head_type == "classification"  # create_model(**kwargs) + load_state_dict


def test_pose_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    namespace = run_section("Keypoints from an image and person boxes", tmp_path, monkeypatch, shrink_input=True)
    assert namespace["result"].keypoints.shape == (2, 17, 2)
    saved = json.loads((tmp_path / "pose.json").read_text())
    assert len(saved["instances"]) == 2 and saved["instances"][1]["box_score"] == pytest.approx(0.71)
    from PIL import Image

    with Image.open(tmp_path / "pose.png") as picture:
        assert picture.size == (320, 400)
    assert namespace["whole"].boxes.tolist() == [[0.0, 0.0, 320.0, 400.0]]


def test_classification_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    namespace = run_section("Image classification", tmp_path, monkeypatch)
    assert len(namespace["result"].names) == 5
    saved = json.loads((tmp_path / "classes.json").read_text())
    assert [c["name"] for c in saved["classes"]] == list(namespace["result"].names)


def test_segmentation_example_runs(tmp_path, monkeypatch):
    """From an image file to an overlay PNG and a label PNG."""
    Image = pytest.importorskip("PIL.Image")
    result = run_section("Semantic segmentation (HRFormer + OCR)", tmp_path, monkeypatch)["result"]
    assert tuple(result.logits.shape) == (19, 120, 160) and tuple(result.labels.shape) == (120, 160)
    with Image.open(tmp_path / "street_overlay.png") as picture:
        assert picture.size == (160, 120) and picture.mode == "RGB"
    with Image.open(tmp_path / "street_labels.png") as labels:
        assert labels.size == (160, 120)
        values = torch.frombuffer(bytearray(labels.tobytes()), dtype=torch.uint8).long().view(120, 160)
    assert torch.equal(values, result.labels)

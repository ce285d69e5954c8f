"""The README's Quick start runs as written: every ```python block of that section, in order, in
one namespace, offline, in a temporary directory, with small models (same shapes). A block whose first line is ``# network`` is
skipped (none is in the Quick start, which must run offline)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def section_blocks(title: str):
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_quick_start_runs_offline(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import hrformer

    create = hrformer.create_model

    def small(name, *args, **kwargs):  # one module per stage, one block: same shapes, ~10x faster
        return create(name, *args, modules=(1, 1, 1, 1), blocks=1, **kwargs)

    monkeypatch.setattr(hrformer, "create_model", small)
    blocks = section_blocks("Quick start")
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        if block.lstrip().startswith("# network"):
            continue
        exec(compile(block, f"README Quick start block {blocks.index(block)}", "exec"), namespace)
    assert tuple(namespace["heatmaps"].shape) == (2, 17, 64, 48)
    assert tuple(namespace["logits"].shape) == (1, 1000)
    assert (tmp_path / "hrformer_t_pose.onnx").exists()


def _runnable_blocks(title: str):
    return [b for b in section_blocks(title) if not b.lstrip().startswith("# network")]


def test_weights_sections_run_on_local_files(tmp_path, monkeypatch):
    """'Pretrained weights' and 'Loading the original checkpoints' as written, on files made from the
    parity weights (official HRFormer-T classifier, mmpose HRFormer-S pose model)."""
    import torch
    from parity import original_state_dict

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.save({"model": original_state_dict("official_cls_hrt_tiny")}, "hrt_tiny.pth")
    torch.save({"state_dict": original_state_dict("mmpose_pose_hrformer_small")},
               "hrformer_small_coco_256x192-5310d898_20220316.pth")
    namespace: dict = {}
    for title in ("Pretrained weights", "Loading the original checkpoints"):
        for i, block in enumerate(_runnable_blocks(title)):
            exec(compile(block, f"README {title} block {i}", "exec"), namespace)
    assert namespace["data"]["interpolation"] == "bicubic" and namespace["tuned"].num_classes == 10
    assert namespace["pose"].head_type == "pose" and namespace["gray"].in_chans == 1
    assert namespace["backbone"].head is None and (tmp_path / "my-hrformer" / "config.json").exists()
    assert namespace["model"].head_type == "classification"  # create_model(**kwargs) + load_state_dict

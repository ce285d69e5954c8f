"""The pages under docs/ run as written, offline (conventions in doc_examples.py): every section
with a python example has an entry in SECTIONS, which says how it runs and what its results must
be; the links between the pages resolve; the heads table matches the heads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
import torch

import hrformer
from doc_examples import PAGES, ROOT, block_marker, page_sections, run_section
from hrformer.heads import HEADS

DOCS = ROOT / "docs"


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def check_architectures(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert tuple(ns["heatmaps"].shape) == (2, 17, 64, 48) and tuple(ns["logits"].shape) == (1, 1000)
    assert [f.shape[1] for f in ns["feats"]] == [18, 36, 72, 144]


def check_pretrained_weights(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert ns["data"]["interpolation"] == "bicubic" and ns["tuned"].num_classes == 10
    assert ns["pose"].head_type == "pose" and ns["gray"].in_chans == 1


def check_saving(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert (tmp_path / "my-hrformer" / "config.json").exists() and (tmp_path / "my-hrformer" / "model.safetensors").exists()
    assert ns["model"].head_type == "pose" and not ns["model"].training
    assert ns["backbone"].head is None


def check_original_checkpoints(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert ns["model"].head_type == "classification"  # create_model(**kwargs) + load_state_dict


def check_pose(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert ns["result"].keypoints.shape == (2, 17, 2)
    saved = json.loads((tmp_path / "pose.json").read_text())
    assert len(saved["instances"]) == 2 and saved["instances"][1]["box_score"] == pytest.approx(0.71)
    from PIL import Image

    with Image.open(tmp_path / "pose.png") as picture:
        assert picture.size == (320, 400)
    assert ns["whole"].boxes.tolist() == [[0.0, 0.0, 320.0, 400.0]]


def check_segmentation(ns: Dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    result = ns["result"]
    assert tuple(result.logits.shape) == (19, 120, 160) and tuple(result.labels.shape) == (120, 160)
    with Image.open(tmp_path / "street_overlay.png") as picture:
        assert picture.size == (160, 120) and picture.mode == "RGB"
    with Image.open(tmp_path / "street_labels.png") as labels:
        assert labels.size == (160, 120)
        values = torch.frombuffer(bytearray(labels.tobytes()), dtype=torch.uint8).long().view(120, 160)
    assert torch.equal(values, result.labels)


def check_classification(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert len(ns["result"].names) == 5
    saved = json.loads((tmp_path / "classes.json").read_text())
    assert [c["name"] for c in saved["classes"]] == list(ns["result"].names)


def check_fine_tuning(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert tuple(ns["logits"].shape) == (1, 5, 16, 16)
    assert {g["lr"] for g in ns["optimizer"].param_groups} >= {1e-3, 8e-4}


def check_fused(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert relative_error(ns["fused_heatmaps"], ns["heatmaps"]) <= 1e-5


def check_freed_memory(ns: Dict[str, Any], tmp_path: Path) -> None:
    from hrformer.fast import memory

    assert ns["kept"] is (memory._glibc() is not None)


def check_compiled(ns: Dict[str, Any], tmp_path: Path) -> None:
    assert tuple(ns["heatmaps"].shape) == (1, 17, 64, 48) and torch.isfinite(ns["heatmaps"]).all()
    # The batch of 8 ran the graph compiled at batch 1 (set_stance("fail_on_recompile") in the
    # example), frozen, with the fused eager model's outputs.
    with torch.inference_mode():
        expected = ns["model"]._orig_mod(ns["images"])
    assert relative_error(ns["batch_heatmaps"], expected) <= 1e-5


def check_cuda_graph(ns: Dict[str, Any], tmp_path: Path) -> None:
    torch.cuda.synchronize()
    with torch.inference_mode():
        expected = ns["model"](ns["batch"])
    assert relative_error(ns["static_heatmaps"], expected) <= 1e-5


def check_onnx(ns: Dict[str, Any], tmp_path: Path) -> None:
    with torch.inference_mode():
        expected = ns["model"](ns["images"])
    assert relative_error(torch.from_numpy(ns["heatmaps"]), expected) <= 1e-4


def check_openvino(ns: Dict[str, Any], tmp_path: Path) -> None:
    with torch.inference_mode():
        expected = ns["model"](ns["images"])
    assert relative_error(torch.from_numpy(ns["heatmaps"]), expected) <= 1e-4


@dataclass(frozen=True)
class Example:
    check: Callable[[Dict[str, Any], Path], None]
    small: bool = True               # small untrained models for every create_model
    shrink_input: bool = False       # ... at a quarter of the tag's input pixels
    needs: Tuple[str, ...] = ()      # optional packages
    checkpoints: bool = False        # the original files the weights examples name, from the parity weights
    sets_inductor_freezing: bool = False  # sets the global inductor option, restored after the test


SECTIONS: Dict[Tuple[str, str], Example] = {
    ("models.md", "Architectures"): Example(check_architectures),
    ("weights.md", "Pretrained weights"): Example(check_pretrained_weights, small=False, checkpoints=True),
    ("weights.md", "Saving and the Hub"): Example(check_saving, small=False),
    ("weights.md", "Loading the original checkpoints"): Example(check_original_checkpoints, small=False,
                                                                checkpoints=True),
    ("pose.md", "Keypoints from an image and person boxes"): Example(check_pose, shrink_input=True, needs=("PIL",)),
    ("segmentation.md", "From an image to labels"): Example(check_segmentation, needs=("PIL",)),
    ("classification.md", "Top-k ImageNet classes"): Example(check_classification, needs=("PIL",)),
    ("training.md", "Fine-tuning on your own dense task"): Example(check_fine_tuning),
    ("speed.md", "The fused model"): Example(check_fused),
    ("speed.md", "Freed memory"): Example(check_freed_memory),
    ("speed.md", "torch.compile"): Example(check_compiled, sets_inductor_freezing=True),
    ("speed.md", "GPU: CUDA graphs"): Example(check_cuda_graph),
    ("speed.md", "ONNX, one file for any input size"): Example(check_onnx, needs=("onnxruntime",)),
    ("speed.md", "OpenVINO"): Example(check_openvino, needs=("openvino",)),
}


def doc_sections() -> Dict[Tuple[str, str], Tuple[Optional[str], ...]]:
    """(page, section) -> the markers of its python blocks, for every section of docs/ with one."""
    return {(page.name, title): tuple(block_marker(b) for b in blocks)
            for page in PAGES if page.parent == DOCS for title, blocks in page_sections(page).items()}


def example_params():
    """One pytest param per documented example; marks from the blocks' markers."""
    params = []
    for key, markers in doc_sections().items():
        marks = []
        if "slow" in markers:
            marks.append(pytest.mark.slow)
        if "cuda" in markers:
            marks.append(pytest.mark.skipif(not torch.cuda.is_available(), reason="the example needs CUDA"))
        params.append(pytest.param(*key, marks=marks, id=f"{key[0]}::{key[1]}"))
    return params


def test_every_python_example_under_docs_has_a_test():
    assert set(doc_sections()) == set(SECTIONS)


@pytest.mark.parametrize("page, title", example_params())
def test_example_runs_as_written(page, title, tmp_path, monkeypatch):
    example = SECTIONS[(page, title)]
    for module in example.needs:
        pytest.importorskip(module)
    if example.checkpoints:
        from parity import original_state_dict

        torch.save({"model": original_state_dict("official_cls_hrt_tiny")}, tmp_path / "hrt_tiny.pth")
        torch.save({"state_dict": original_state_dict("mmpose_pose_hrformer_small")},
                   tmp_path / "hrformer_small_coco_256x192-5310d898_20220316.pth")
    if example.sets_inductor_freezing:
        import torch._inductor.config as inductor_config

        monkeypatch.setattr(inductor_config, "freezing", inductor_config.freezing)  # restored at teardown
    namespace = run_section(DOCS / page, title, tmp_path, monkeypatch, small=example.small,
                            shrink_input=example.shrink_input)
    example.check(namespace, tmp_path)


def github_anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
                if anchor not in {github_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target}")
    assert broken == []


def test_heads_table_lists_every_head_with_its_outputs_and_pipeline():
    text = (DOCS / "models.md").read_text()
    table = text[text.index("\n## Heads\n"):text.index("\n## ", text.index("\n## Heads\n") + 1)]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", table, flags=re.M)}
    assert sorted(rows) == sorted(HEADS)
    for name, head in HEADS.items():
        row = rows.get(name)
        assert row is not None, f"head {name!r} missing from the heads table"
        h, w = head.default_input_size
        for expected in (f"`{head.output_arg}` ({head.default_outputs})", f"{h}x{w}",
                         f"`hrformer.{head.predict_task}.predict`"):
            assert expected in row, f"{name}: {expected!r} not in {row!r}"

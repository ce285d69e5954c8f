"""examples/finetune_dense.py: a custom dense head on a features_only HRFormer-T learns (the loss
falls) with layer-wise lr decay, gradient checkpointing and bf16 only where it is native."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "finetune_dense.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("finetune_dense", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~15 s on 2 cores: 16 training steps of HRFormer-T at 64x64
def test_quick_run_lowers_the_loss():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--quick"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"loss (\d+\.\d+) -> (\d+\.\d+)", done.stdout)
    assert found, done.stdout
    first, last = map(float, found.groups())
    assert last < 0.9 * first, done.stdout


def test_training_steps_run_in_process(example, capsys):
    """Two tiny steps through everything the example uses (the slow test shows the loss falling)."""
    losses = example.main(["--steps", "2", "--image-size", "32", "--batch-size", "2", "--bf16", "off"])
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert re.fullmatch(r"loss \d+\.\d+ -> \d+\.\d+\n", capsys.readouterr().out)


def test_parts(example, tmp_path):
    gen = torch.Generator().manual_seed(0)
    images, masks = example.synthetic_batch(2, 32, gen)
    assert images.shape == (2, 3, 32, 32) and masks.shape == (2, 32, 32)
    assert set(masks.unique().tolist()) <= {0, 1, 2} and (masks > 0).any()
    model = example.Segmenter("hrformer_t", 3)
    optimizer = example.optimizer_for(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lrs) == sum(1 for _ in model.parameters())  # every parameter, once
    assert lrs[id(model.head.classifier.weight)] == 1e-3
    assert lrs[id(model.backbone.stem.conv1.conv.weight)] < lrs[id(model.backbone.stage4.transition.branches[3][0].conv.weight)] < 1e-3
    # --pretrained FILE: a checkpoint on disk gives the backbone its weights.
    torch.save(model.backbone.state_dict(), tmp_path / "backbone.pth")
    reloaded = example.Segmenter("hrformer_t", 3, pretrained=str(tmp_path / "backbone.pth"))
    assert torch.equal(reloaded.backbone.stage4.transition.branches[3][0].conv.weight,
                       model.backbone.stage4.transition.branches[3][0].conv.weight)
    cpu = torch.device("cpu")
    assert example.native_bf16(cpu, "flags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    assert example.native_bf16(cpu, "flags\t\t: fpu amx_bf16\n")
    assert not example.native_bf16(cpu, "flags\t\t: fpu sse avx2 avx512f\n")

"""Fused models are ordinary picklable objects (``pickle``, ``copy.deepcopy``, ``torch.save(model)``,
DataLoader workers started with spawn) that reload as fused models with the same outputs; the
fast-path switch also sends the fused window attention through the reference attention."""

from __future__ import annotations

import copy
import importlib
import io
import pickle
import subprocess
import sys
import warnings

import pytest
import torch

from hrformer import HRFormer
from hrformer.fast import kernels
from hrformer.fast import attention
from hrformer.fast.attention import FusedWindowAttention
from hrformer.layers import LocalWindowAttention
from parity import SMALL, outputs

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module", params=[None, torch.bfloat16], ids=["fp32", "bf16"])
def fused(request):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # bf16 on a CPU without it: tests/test_bf16.py
        model = HRFormer(SMALL, head="pose").eval().fuse_for_inference(dtype=request.param)
    model.expected = outputs(model, X)  # pickled along with the model: it must come back equal
    return model


def _torch_save_load(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("roundtrip", [
    lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy, _torch_save_load,
], ids=["pickle", "deepcopy", "torch.save"])
def test_fused_model_round_trips_to_the_same_outputs(fused, roundtrip):
    loaded = roundtrip(fused)
    assert type(loaded) is HRFormer and loaded.is_fused and loaded.fused == fused.fused
    assert next(loaded.parameters()).dtype == next(fused.parameters()).dtype
    assert all(torch.equal(a, b) for a, b in zip(loaded.expected, fused.expected))
    for a, b in zip(fused.expected, outputs(loaded, X)):
        assert a.dtype == torch.float32 and torch.equal(a, b)
    with pytest.raises(RuntimeError, match="fused for inference"):
        loaded.train()


def test_a_deep_copy_is_independent(fused):
    clone = copy.deepcopy(fused)
    with torch.no_grad():
        next(clone.parameters()).add_(1)
    assert not torch.equal(next(clone.parameters()), next(fused.parameters()))


_SPAWNED_WORKER = """
import torch
from hrformer import HRFormer
from hrformer.config import HRFORMER_T


class Images(torch.utils.data.Dataset):
    # Runs the model in the worker: the dataset (and the fused model in it) is pickled to it.
    def __init__(self, model, images):
        self.model, self.images = model, images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        with torch.no_grad():
            return self.model(self.images[i : i + 1])[0]


if __name__ == "__main__":
    torch.manual_seed(0)
    model = HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="pose").eval().fuse_for_inference()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(images)
    loader = torch.utils.data.DataLoader(Images(model, images), batch_size=2, num_workers=1,
                                         multiprocessing_context="spawn")
    (batch,) = list(loader)
    assert torch.allclose(batch, expected, rtol=0, atol=1e-6), (batch - expected).abs().max()
    print("worker outputs equal")
"""


@pytest.mark.slow  # starts a spawned worker process (~3 s on a quiet machine, 10-25 s on a busy one)
def test_fused_model_in_a_spawned_dataloader_worker(tmp_path):
    # In a process of its own: handing the model to a spawned worker moves its storages into shared
    # memory, and later torch.compile tests in the same pytest process then crashed (segfault).
    script = tmp_path / "spawned_worker.py"
    script.write_text(_SPAWNED_WORKER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "worker outputs equal" in done.stdout, done.stderr[-2000:]


@pytest.fixture
def switch():
    previous = kernels._enabled
    yield kernels.set_fast_path
    kernels.set_fast_path(previous)


def test_switch_sends_fused_attention_through_the_reference_path(fused, switch, monkeypatch):
    calls = []
    reference_attend = LocalWindowAttention.attend

    def spy(self, *args):
        calls.append(type(self))
        return reference_attend(self, *args)

    monkeypatch.setattr(LocalWindowAttention, "attend", spy)
    attentions = sum(isinstance(m, FusedWindowAttention) for m in fused.modules())
    switch(False)
    off = outputs(fused, X)
    assert calls == [FusedWindowAttention] * attentions  # every window attention, reference path
    tol = 3e-2 if fused.fused.casts_inputs else 1e-5
    for a, b in zip(fused.expected, off):  # the same outputs as with the fast path on
        assert (a - b).abs().max() <= tol * b.abs().max()
    switch(True)
    # Fast path on: the explicit product where it measured faster (pinned here), else the flash kernel.
    dtype = next(fused.parameters()).dtype
    for path in ("explicit", "flash"):
        monkeypatch.setattr(attention, "attention_path", path)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            outputs(fused, X)
        flash = sum(e.name == "aten::scaled_dot_product_attention" for e in prof.events())
        explicit = path == "explicit" and kernels.fast_path_enabled() and dtype in kernels.kernel_dtypes()
        assert flash == (0 if explicit else attentions)


def test_environment_switch_reaches_the_fused_attention(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, "0")
    importlib.reload(kernels)
    try:
        torch.manual_seed(0)
        model = HRFormer(SMALL, head=None).eval().fuse_for_inference()
        attention = next(m for m in model.modules() if isinstance(m, FusedWindowAttention))
        called = []
        monkeypatch.setattr(LocalWindowAttention, "attend", lambda self, *a: called.append(1) or torch.zeros(0))
        q = torch.randn(4, 1, 49, 18)
        attention.attend(q, q, q, None)
        assert called == [1]
    finally:
        monkeypatch.undo()
        importlib.reload(kernels)

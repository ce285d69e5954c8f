"""Shared test helpers, as fixtures (test modules import none of each other)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import pytest
import torch

from hrformer.heads import HEADS


def outputs_kwarg(head: Optional[str], n: int) -> Dict[str, Any]:
    """``{"num_classes": n}`` or ``{"num_keypoints": n}`` as the head takes it; ``{}`` for none."""
    return {HEADS[head].output_arg: n} if head is not None else {}


@pytest.fixture
def head_kwargs() -> Callable[[Optional[str], int], Dict[str, Any]]:
    return outputs_kwarg


def randomise_batch_norm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding them is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model


@pytest.fixture
def randomise_bn() -> Callable[[torch.nn.Module], torch.nn.Module]:
    return randomise_batch_norm


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny networks (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): they run thousands of small ops, and on a loaded 2-core machine OpenMP's
    hand-offs cost more than they give (measured: 1.2 s vs 0.1 s per 64x48 OCR forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

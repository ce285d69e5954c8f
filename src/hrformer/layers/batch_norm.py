"""BatchNorm that tolerates a single value per channel in training mode, and leaves its running
statistics alone while gradient checkpointing recomputes a block."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_state = threading.local()


@contextlib.contextmanager
def frozen_running_stats() -> Iterator[None]:
    """Inside: training-mode :class:`BatchNorm2d` normalises with batch statistics as usual but does
    not update its running statistics. Gradient checkpointing runs each recomputation in it, so a
    checkpointed training step updates them once, like an ordinary one."""
    previous = getattr(_state, "frozen", False)
    _state.frozen = True
    try:
        yield
    finally:
        _state.frozen = previous


class BatchNorm2d(nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` that normalises with its running statistics (and leaves them
    untouched) when a training batch holds one value per channel, e.g. batch 1 at the stride-32
    branch of a 32x32 input, where batch statistics do not exist and torch would raise.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            if x.shape[0] * x.shape[2] * x.shape[3] == 1:
                return F.batch_norm(
                    x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
                )
            if getattr(_state, "frozen", False):
                # The same kernel as the first pass (checkpointing compares what both save), its
                # running-statistics update undone.
                saved = [t.clone() for t in (self.running_mean, self.running_var, self.num_batches_tracked)]
                out = super().forward(x)
                with torch.no_grad():
                    for t, old in zip((self.running_mean, self.running_var, self.num_batches_tracked), saved):
                        t.copy_(old)
                return out
        return super().forward(x)

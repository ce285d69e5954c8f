"""BatchNorm that tolerates a single value per channel in training mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm2d(nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` that normalises with its running statistics (and leaves them
    untouched) when a training batch holds one value per channel, e.g. batch 1 at the stride-32
    branch of a 32x32 input, where batch statistics do not exist and torch would raise.

    Shapes: (B, C, H, W) -> (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1 and self.track_running_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)

"""The multi-resolution module: parallel branches, then fusion."""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .checkpoint import checkpointed
from .fusion import Fusion


class HRModule(nn.Module):
    """Runs each branch on its own resolution, then exchanges information with :class:`Fusion`.

    Shapes: list of (B, C_i, H_i, W_i) -> list of ``fusion`` outputs (all branches unless the
    fusion keeps fewer).
    """

    def __init__(self, branches: Sequence[nn.Module], fusion: Fusion) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.fusion = fusion
        self.grad_checkpointing = False

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        if self.grad_checkpointing and torch.is_grad_enabled():
            # Block by block, then the fusion: only block inputs stay alive until the backward
            # pass, which recomputes one block at a time (a whole module at once peaks far higher).
            xs = [self._checkpointed(branch, x) for branch, x in zip(self.branches, xs)]
            return checkpointed(self.fusion, xs)
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        return self.fusion(xs)

    @staticmethod
    def _checkpointed(branch: nn.Module, x: torch.Tensor) -> torch.Tensor:
        for block in branch.children() if isinstance(branch, nn.Sequential) else [branch]:
            x = checkpointed(block, x)
        return x

"""A stage: a transition that adds a lower-resolution branch, then multi-resolution modules."""

from __future__ import annotations

from typing import Callable, List, Sequence

import torch
from torch import nn

from .checkpoint import checkpointed
from .fusion import Fusion
from .hr_module import HRModule
from .transition import Transition

BlockFactory = Callable[[int, int, float], nn.Module]
"""``block(branch_index, block_index_in_branch, drop_path) -> nn.Module`` of constant width."""


class Stage(nn.Module):
    """Transition plus ``num_modules`` :class:`HRModule`.

    Shapes: list of (B, in_chs[i], H_i, W_i) -> list of (B, channels[i], H_i, W_i) (only the first
    map when ``multiscale_output`` is False).
    """

    def __init__(
        self,
        in_chs: Sequence[int],
        channels: Sequence[int],
        num_modules: int,
        num_blocks: int,
        block: BlockFactory,
        drop_path: Sequence[float],
        upsample_mode: str,
        multiscale_output: bool = True,
    ) -> None:
        super().__init__()
        self.transition = Transition(in_chs, channels)
        hr_modules = []
        for m in range(num_modules):
            branches = [
                nn.Sequential(*(block(b, k, drop_path[m * num_blocks + k]) for k in range(num_blocks)))
                for b in range(len(channels))
            ]
            last = m == num_modules - 1
            num_outputs = len(channels) if multiscale_output or not last else 1
            hr_modules.append(HRModule(branches, Fusion(channels, num_outputs, upsample_mode)))
        self.hr_modules = nn.ModuleList(hr_modules)
        self.grad_checkpointing = False  # for the transition; the modules have their own flag

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        if self.grad_checkpointing and torch.is_grad_enabled():
            xs = checkpointed(self.transition, xs)
        else:
            xs = self.transition(xs)
        for hr_module in self.hr_modules:
            xs = hr_module(xs)
        return xs

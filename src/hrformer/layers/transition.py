"""Transition between stages: adapts existing branches and spawns the new lower-resolution one."""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from .conv_norm_act import ConvNormAct


class Transition(nn.Module):
    """Maps the branches of one stage to the branches of the next.

    An existing branch whose width changes gets a 3x3 conv-BN-ReLU; a new branch is made from the
    lowest-resolution input by a chain of 3x3 stride-2 conv-BN-ReLU.

    Shapes: list of (B, in_chs[i], H_i, W_i) -> list of (B, out_chs[i], H_i, W_i), with
    H_{i+1} = ceil(H_i / 2).
    """

    def __init__(self, in_chs: Sequence[int], out_chs: Sequence[int]) -> None:
        super().__init__()
        self.num_inputs = len(in_chs)
        paths: List[nn.Module] = []
        for i, out_c in enumerate(out_chs):
            if i < len(in_chs):
                path: nn.Module = (
                    nn.Sequential(ConvNormAct(in_chs[i], out_c, 3, act_layer=nn.ReLU))
                    if in_chs[i] != out_c
                    else nn.Identity()
                )
            else:
                steps = i + 1 - len(in_chs)
                chs = [in_chs[-1]] * steps + [out_c]
                path = nn.Sequential(
                    *(ConvNormAct(chs[k], chs[k + 1], 3, stride=2, act_layer=nn.ReLU) for k in range(steps))
                )
            paths.append(path)
        self.branches = nn.ModuleList(paths)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [path(xs[min(i, self.num_inputs - 1)]) for i, path in enumerate(self.branches)]

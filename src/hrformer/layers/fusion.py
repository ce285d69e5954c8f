"""HRNet-style exchange across resolutions at the end of every multi-resolution module."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import UPSAMPLE_MODES
from ..errors import InputError
from .conv_norm_act import ConvNormAct


def upsample(x: torch.Tensor, scale: int, mode: str, size: Tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, H, W): upsampled by ``scale`` with ``mode``, then resized to ``size``
    when it differs (see :class:`UpsamplePath`)."""
    align = None if mode == "nearest" else False
    x = F.interpolate(x, scale_factor=float(scale), mode=mode, align_corners=align)
    # When tracing, ``size`` depends on the input size: always resize (an identity when equal).
    if torch.jit.is_tracing() or tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=mode == "nearest")
    return x


class UpsamplePath(ConvNormAct):
    """1x1 conv + BN, upsample by ``2**levels``, then resize to the target size when it differs.

    ``mode="nearest"`` is the official classification code (nearest, then bilinear with
    align_corners=True); ``mode="bilinear"`` is the official pose code and mmpose (bilinear with
    align_corners=False, both steps).

    Shapes: (B, in_chs, h, w) -> (B, out_chs, H, W) for a target size (H, W).
    """

    def __init__(self, in_chs: int, out_chs: int, levels: int, mode: str) -> None:
        if mode not in UPSAMPLE_MODES:
            raise InputError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
        super().__init__(in_chs, out_chs, 1)
        self.scale = 2**levels
        self.mode = mode

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return upsample(super().forward(x), self.scale, self.mode, size)  # conv + BN (no activation)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode}"


class SeparableDownsample(nn.Module):
    """3x3 depth-wise stride-2 conv + BN, then 1x1 conv + BN (+ ReLU).

    Shapes: (B, in_chs, H, W) -> (B, out_chs, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_chs: int, out_chs: int, act: bool, bias: bool = False) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_chs, in_chs, 3, stride=2, groups=in_chs, bias=bias)
        self.pw = ConvNormAct(in_chs, out_chs, 1, bias=bias, act_layer=nn.ReLU if act else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DownsamplePath(nn.Sequential):
    """``levels`` chained :class:`SeparableDownsample` steps; the width changes in the last step,
    which has no ReLU (the sum is activated after fusion).

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H / 2**levels, W / 2**levels) (ceil at each step).
    """

    def __init__(self, in_chs: int, out_chs: int, levels: int) -> None:
        super().__init__(*(
            SeparableDownsample(in_chs, out_chs if k == levels - 1 else in_chs, act=k < levels - 1)
            for k in range(levels)
        ))

    def forward(self, x: torch.Tensor, size: Tuple[int, int] = (0, 0)) -> torch.Tensor:
        for step in self:
            x = step(x)
        return x


class IdentityPath(nn.Module):
    """A branch's own contribution to its fused output."""

    def forward(self, x: torch.Tensor, size: Tuple[int, int] = (0, 0)) -> torch.Tensor:
        return x


class Fusion(nn.Module):
    """Output ``i`` = ReLU(sum over branches ``j`` of path_ij(x_j)), summed in branch order.

    ``num_outputs`` < number of branches fuses only into the highest-resolution branches (the pose
    models' last module uses 1).

    Shapes: list of (B, C_j, H_j, W_j) -> list of ``num_outputs`` maps (B, C_i, H_i, W_i).
    """

    def __init__(self, channels: Sequence[int], num_outputs: int, upsample_mode: str) -> None:
        super().__init__()

        def path(i: int, j: int) -> nn.Module:
            if j > i:
                return UpsamplePath(channels[j], channels[i], j - i, upsample_mode)
            if j < i:
                return DownsamplePath(channels[j], channels[i], i - j)
            return IdentityPath()

        self.paths = nn.ModuleList(
            nn.ModuleList(path(i, j) for j in range(len(channels))) for i in range(num_outputs)
        )
        self.act = nn.ReLU()

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        outs = []
        for i, paths in enumerate(self.paths):
            size = (xs[i].shape[-2], xs[i].shape[-1])
            y = paths[0](xs[0], size)
            for path, x in zip(paths[1:], xs[1:]):
                y = y + path(x, size)
            outs.append(self.act(y))
        return outs

"""Conv -> BatchNorm -> activation, the unit every convolutional path is built from."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .batch_norm import BatchNorm2d


class ConvNormAct(nn.Module):
    """``act(bn(conv(x)))``; ``act`` may be omitted.

    Keeping conv and BN in one module makes BatchNorm folding (``hrformer.fast``) a local operation.

    Shapes: (B, in_chs, H, W) -> (B, out_chs, H', W').
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        act_layer: Optional[Callable[[], nn.Module]] = None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=bias
        )
        self.bn: nn.Module = BatchNorm2d(out_chs)
        self.act: nn.Module = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

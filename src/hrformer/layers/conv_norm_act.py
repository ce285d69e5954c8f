"""Conv -> BatchNorm -> activation, the unit every convolutional path is built from."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .batch_norm import BatchNorm2d
from .onednn import conv_act, conv_add_act, conv_pays, onednn_attr, use_onednn


class ConvNormAct(nn.Module):
    """``act(bn(conv(x)))``; ``act`` may be omitted.

    Keeping conv and BN in one module makes BatchNorm folding (``fuse()``) a local operation. Once
    fused, conv and activation run as one oneDNN kernel where :func:`use_onednn` allows.

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
        # oneDNN post-op name of ``act`` once the BatchNorm is folded (``fuse``); None before.
        self.fused_attr: Optional[str] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_attr is not None and conv_pays(x, self.conv) and use_onednn(x, self.conv.weight):
            return conv_act(x, self.conv, self.fused_attr)
        return self.act(self.bn(self.conv(x)))

    def add_act(self, x: torch.Tensor, residual: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """``act(self(x) + residual)``: one oneDNN kernel on a fused module without activation."""
        attr = onednn_attr(act)
        if (self.fused_attr == "none" and attr is not None and conv_pays(x, self.conv)
                and use_onednn(x, self.conv.weight)):
            return conv_add_act(x, residual, self.conv, attr)
        return act(self(x) + residual)

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution, in place."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.fused_attr = onednn_attr(self.act)
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, groups=conv.groups, bias=True,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
        self.conv = fused
        self.bn = nn.Identity()

"""Conv -> BatchNorm -> activation, the unit every convolutional path is built from."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

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
        params = self._onednn_params(x)
        attr = self.fused_attr or onednn_attr(self.act)
        if params is not None and attr is not None:
            return conv_act(x, self.conv, attr, *params)
        return self.act(self.bn(self.conv(x)))

    def add_act(self, x: torch.Tensor, residual: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """``act(self(x) + residual)``, one oneDNN kernel where possible (no own activation)."""
        attr = onednn_attr(act)
        params = self._onednn_params(x) if attr is not None and isinstance(self.act, nn.Identity) else None
        if params is not None:
            return conv_add_act(x, residual, self.conv, attr, *params)
        return act(self(x) + residual)

    def _onednn_params(self, x: torch.Tensor) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
        """Weight and bias for a fused oneDNN kernel on ``x``, or None for the reference ops.

        Fused modules use their convolution; unfused ones in eval mode fold the BatchNorm on the
        fly (a few tiny ops on the weights instead of a pass over the activations)."""
        if not (conv_pays(x, self.conv) and use_onednn(x, self.conv.weight)):
            return None
        if self.fused_attr is not None:
            return self.conv.weight, self.conv.bias
        bn = self.bn
        if isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_var is not None and bn.affine:
            return self._folded_weight_bias()
        return None

    def _folded_weight_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Convolution weight and bias with the eval-mode BatchNorm folded in."""
        bn, conv = self.bn, self.conv
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        return conv.weight * scale.reshape(-1, 1, 1, 1), (bias - bn.running_mean) * scale + bn.bias

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the (eval-mode) BatchNorm into the convolution, in place."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        self.fused_attr = onednn_attr(self.act)
        weight, bias = self._folded_weight_bias()
        conv = self.conv
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, groups=conv.groups, bias=True,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.conv = fused
        self.bn = nn.Identity()

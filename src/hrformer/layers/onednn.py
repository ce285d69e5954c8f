"""oneDNN fused kernels for the inference fast path of fused models.

After :meth:`HRFormer.fuse_for_inference` every convolution is followed directly by its activation
(the BatchNorm is folded in), so ``act(conv(x) [+ residual])`` can run as one oneDNN primitive with
post-ops: one pass over memory and one allocation instead of two or three. On 2 CPU cores this
makes the FFN about 3x faster than conv, GELU, conv, GELU, conv, GELU as separate kernels.

The kernels have no autograd formulas and are invisible to exporters and FLOP counters, so
:func:`use_onednn` sends everything else (training, autocast, tracing, export, ``torch.compile``,
``hrformer.profile``) to the reference ops.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - very old torch
    def _get_current_dispatch_mode():  # type: ignore[misc]
        return None

_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
AVAILABLE = _CONV is not None and _LINEAR is not None and torch.backends.mkldnn.is_available()

# Below these sizes a oneDNN call (~40 us of fixed cost on 2 cores) loses to the reference ops: 1x1
# convolutions then run as a plain GEMM, small linears through MKL (measured on 2 AMD EPYC cores).
MIN_POINTWISE_CONV_OUTPUT = 1 << 16
MIN_MACS = 8_000_000
MIN_LINEAR_MACS = 16_000_000

try:
    torch.is_autocast_enabled("cpu")

    def _autocast_cpu() -> bool:
        return torch.is_autocast_enabled("cpu")
except TypeError:  # torch < 2.4
    _autocast_cpu = torch.is_autocast_cpu_enabled


def onednn_attr(act: nn.Module) -> Optional[str]:
    """The oneDNN post-op name of ``act`` ("none", "relu", "gelu"), or None if it has none."""
    if isinstance(act, nn.Identity):
        return "none"
    if isinstance(act, nn.ReLU):
        return "relu"
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return "gelu"
    return None


def use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when the fused oneDNN kernels may replace the reference ops for input ``x``: plain fp32
    CPU tensors, no gradient needed, no autocast, and nothing tracing or intercepting the ops
    (TorchScript, ``torch.compile``/``torch.export``, ONNX export, FLOP counters, fake tensors)."""
    return (
        AVAILABLE
        and type(x) is torch.Tensor
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not _autocast_cpu()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
    )


def conv_pays(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether a oneDNN call is worth its fixed cost for ``conv`` on input ``x`` (B, C, H, W):
    always for spatial kernels (they take oneDNN anyway), for 1x1 ones on large outputs only."""
    if conv.kernel_size != (1, 1):
        return True
    out = x.shape[0] * conv.out_channels * x.shape[2] * x.shape[3]
    return out >= MIN_POINTWISE_CONV_OUTPUT or out * conv.in_channels // conv.groups >= MIN_MACS


def conv_act(
    x: torch.Tensor, conv: nn.Conv2d, attr: str, weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``act(conv(x))`` in one oneDNN primitive, with ``conv``'s geometry and its parameters or the
    given ``weight``/``bias`` (e.g. BatchNorm folded in). Channels-last in and out."""
    weight, bias = (conv.weight, conv.bias) if weight is None else (weight, bias)
    return _CONV(
        x, weight, bias, _pair(conv.padding), _pair(conv.stride), _pair(conv.dilation), conv.groups,
        attr, [], "none" if attr == "gelu" else "",
    )


def conv_add_act(
    x: torch.Tensor, other: torch.Tensor, conv: nn.Conv2d, attr: str, weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``act(conv(x) + other)`` in one oneDNN primitive (the residual add of HRNet blocks); oneDNN
    fuses only ReLU after the add, other activations run separately. Parameters as :func:`conv_act`."""
    weight, bias = (conv.weight, conv.bias) if weight is None else (weight, bias)
    if attr not in ("none", "relu") or not other.is_contiguous(memory_format=torch.channels_last):
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return _reference_act(y + other, attr)
    return _CONV.binary(
        x, other, weight, bias, _pair(conv.padding), _pair(conv.stride), _pair(conv.dilation),
        conv.groups, "add", None, None if attr == "none" else attr, [], None,
    )


def linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    """``lin(x)`` with oneDNN's matmul: up to 1.6x faster than MKL's on the large, narrow token
    matrices of the high-resolution branches (e.g. 27440 x 78 -> 234 at HRFormer-B, batch 8)."""
    return _LINEAR(x, lin.weight, lin.bias, "none", [], "")


def maybe_linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    """:func:`linear` where :func:`use_onednn` allows it and it pays, else ``lin(x)``."""
    pays = x.numel() * lin.out_features >= MIN_LINEAR_MACS
    return linear(x, lin) if pays and use_onednn(x, lin.weight) else lin(x)


def _reference_act(x: torch.Tensor, attr: str) -> torch.Tensor:
    return {"none": lambda t: t, "relu": F.relu, "gelu": F.gelu}[attr](x)


def _pair(v) -> list:
    return [int(v), int(v)] if isinstance(v, int) else [int(i) for i in v]

"""oneDNN fused kernels behind the inference fast path, and the switches that guard them.

After BatchNorm folding every convolution is followed directly by its activation, so
``act(conv(x) [+ residual])`` can run as one oneDNN primitive with post-ops: one pass over memory
instead of two or three (the FFN runs about 3x faster on 2 CPU cores than conv, GELU, conv, GELU,
conv, GELU as separate kernels). These are private ``torch.ops.mkldnn`` operators, so:

- they run only inside :func:`kernels_for`, which the fused model enters for an input that is
  finite (oneDNN's ReLU post-op turns NaN into 0; with a non-finite input the public ops run, and
  NaN/Inf reach the output as in the reference model);
- never for training, autocast, tracing, export, ``torch.compile``, FLOP counting or fake tensors;
- ``HRFORMER_FAST_PATH=0`` in the environment, or :func:`set_fast_path(False) <set_fast_path>`,
  turns them off, and the fused window attention's explicit softmax with them: the fused model then
  runs the reference layers' public PyTorch ops only, with the same outputs;
- each kind of kernel is checked once per dtype, on first use, against the public ops on a tiny
  input; a kernel whose signature or result no longer matches disables itself with one warning.

They take fp32 and, where oneDNN runs it (AVX-512 or newer), bf16 (``fuse_for_inference(dtype=
torch.bfloat16)``): with native bf16 (AMX) the products get so fast that the separate activation
and residual passes would be most of the remaining time.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import warnings
from typing import Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - very old torch
    def _get_current_dispatch_mode():  # type: ignore[misc]
        return None

ENV_VAR = "HRFORMER_FAST_PATH"

_MKLDNN = getattr(torch.ops, "mkldnn", None)
_CONV = getattr(_MKLDNN, "_convolution_pointwise", None)
_LINEAR = getattr(_MKLDNN, "_linear_pointwise", None)

# Below these sizes a oneDNN call (~40 us of fixed cost on 2 cores) loses to the public ops: 1x1
# convolutions then run as a plain GEMM, small linears through MKL (measured on 2 AMD EPYC cores).
MIN_POINTWISE_CONV_OUTPUT = 1 << 16
MIN_MACS = 8_000_000
MIN_LINEAR_MACS = 16_000_000

_AVAILABLE = _CONV is not None and _LINEAR is not None and torch.backends.mkldnn.is_available()
# oneDNN runs bf16 where the CPU has AVX512-BF16 / AMX (natively) or AVX-512 BW/VL/DQ (emulated);
# elsewhere (AVX2 only) the bf16 kernels raise, so bf16 models keep the public ops there.
_is_bf16_supported = getattr(_MKLDNN, "_is_mkldnn_bf16_supported", None)
_BF16 = _AVAILABLE and _is_bf16_supported is not None and bool(_is_bf16_supported())
_KERNEL_DTYPES = (torch.float32, torch.bfloat16) if _BF16 else (torch.float32,)
_enabled = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no")
_verified: Dict[Tuple[str, torch.dtype], bool] = {}


class _KernelState(threading.local):
    """Per thread: whether the forward running on it may use the kernels. A class attribute default,
    so that reading it is a plain attribute read (``torch.compile`` guarded on ``hasattr`` of a bare
    thread-local and recompiled once the eager model had run)."""

    active = False


_state = _KernelState()

try:
    torch.is_autocast_enabled("cpu")

    def _autocast_cpu() -> bool:
        return torch.is_autocast_enabled("cpu")
except TypeError:  # torch < 2.4
    _autocast_cpu = torch.is_autocast_cpu_enabled


def set_fast_path(enabled: bool) -> None:
    """Allow (default) or forbid the private oneDNN kernels and the explicit attention in fused
    models, for this process."""
    global _enabled
    _enabled = bool(enabled)


def fast_path_enabled() -> bool:
    """Whether fused models may use the oneDNN kernels (``HRFORMER_FAST_PATH``, :func:`set_fast_path`)."""
    return _enabled and _AVAILABLE


def kernel_dtypes() -> Tuple[torch.dtype, ...]:
    """The dtypes the kernels take on this machine: fp32, and bf16 where oneDNN runs it."""
    return _KERNEL_DTYPES


def _plain_cpu_inference(x: torch.Tensor) -> bool:
    """A plain fp32 (or, where oneDNN runs it, bf16) CPU tensor, no autocast, and nothing tracing or
    intercepting the ops (TorchScript, ``torch.compile``/``torch.export``, ONNX export, FLOP
    counters, fake tensors)."""
    return (
        type(x) is torch.Tensor
        and x.device.type == "cpu"
        and x.dtype in _KERNEL_DTYPES
        and not _autocast_cpu()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
    )


def _finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite, conservatively: from its sum, one pass without the
    three passes and two bool tensors of ``isfinite(x).all()`` (1 ms of a batch-8 forward). NaN and
    Inf make the sum non-finite; finite values whose sum overflows say "not finite" too, which only
    sends that input through the public ops, with the same outputs."""
    return bool(torch.isfinite(x.sum()))


@contextlib.contextmanager
def kernels_for(x: torch.Tensor) -> Iterator[None]:
    """Inside: the kernels may run, if the fast path is enabled and ``x`` (the model input) is a
    finite plain CPU fp32 or bf16 tensor in a pass without gradients. Tracers and compilers never enter
    (see :func:`tracing`)."""
    previous = _state.active
    # Nested (forward -> forward_features, same input): the outer decision stands, no second pass
    # over the input.
    _state.active = previous or (
        fast_path_enabled() and not torch.is_grad_enabled() and _plain_cpu_inference(x)
        and _finite(x)
    )
    try:
        yield
    finally:
        _state.active = previous


def for_model_input(x: torch.Tensor) -> ContextManager[None]:
    """What a fused model's forward runs in: :func:`kernels_for` its input ``x``, or nothing while
    tracing or compiling, whose graphs hold the public ops only (and could not take the finiteness
    check, which reads the data)."""
    return contextlib.nullcontext() if tracing() else kernels_for(x)


def tracing() -> bool:
    """Whether TorchScript, ``torch.compile`` or ``torch.export`` is recording the ops."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def active(x: torch.Tensor) -> bool:
    """Whether a kernel may replace the public ops for ``x`` now: inside :func:`kernels_for` a finite
    plain input, still without gradients or autocast (a hook may enter them), and ``x`` in a dtype
    the kernels take. The rest of :func:`_plain_cpu_inference` (device, tensor type, tracing,
    dispatch modes) was decided for the model's input and holds for every tensor its forward makes;
    checked again per op it cost ~1 ms per HRFormer-T forward."""
    return (_state.active and x.dtype in _KERNEL_DTYPES and not torch.is_grad_enabled()
            and not _autocast_cpu())


_POST_OPS: Dict[type, str] = {nn.Identity: "none", nn.ReLU: "relu", nn.GELU: "gelu"}


def onednn_attr(act: nn.Module) -> Optional[str]:
    """The oneDNN post-op name of ``act`` ("none", "relu", "gelu"), or None if it has none."""
    attr = _POST_OPS.get(type(act))
    if attr is None:  # a subclass
        attr = next((a for cls, a in _POST_OPS.items() if isinstance(act, cls)), None)
    if attr == "gelu" and act.approximate != "none":
        return None
    return attr


def conv_pays(x: torch.Tensor, conv: nn.Conv2d) -> bool:
    """Whether a oneDNN call is worth its fixed cost for ``conv`` on input ``x`` (B, C, H, W):
    always for spatial kernels (they take oneDNN anyway), for 1x1 ones on large outputs only."""
    if conv.weight.dtype != x.dtype:
        return False
    if conv.kernel_size != (1, 1):
        return True
    out = x.shape[0] * conv.out_channels * x.shape[2] * x.shape[3]
    return out >= MIN_POINTWISE_CONV_OUTPUT or out * conv.in_channels // conv.groups >= MIN_MACS


def linear_pays(x: torch.Tensor, lin: nn.Linear) -> bool:
    return lin.weight.dtype == x.dtype and x.numel() * lin.out_features >= MIN_LINEAR_MACS


_REFERENCE_ACTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"none": lambda t: t, "relu": F.relu, "gelu": F.gelu}


def reference_act(x: torch.Tensor, attr: str) -> torch.Tensor:
    return _REFERENCE_ACTS[attr](x)


def reference_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` without the module call (hooks on a fused layer's inner convolution do not run)."""
    return conv._conv_forward(x, conv.weight, conv.bias)


def _pair(v) -> List[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(i) for i in v]


# (padding, stride, dilation) as a convolution holds them -> as the operators take them.
_GEOMETRIES: Dict[tuple, Tuple[List[int], List[int], List[int]]] = {}


def _geometry(conv: nn.Conv2d) -> Tuple[List[int], List[int], List[int]]:
    """(padding, stride, dilation) of ``conv`` as the operators take them (kept by value: a handful
    of distinct geometries per model)."""
    key = (conv.padding, conv.stride, conv.dilation)
    geometry = _GEOMETRIES.get(key)
    if geometry is None:
        geometry = _GEOMETRIES[key] = (_pair(conv.padding), _pair(conv.stride), _pair(conv.dilation))
    return geometry


def _onednn_conv_act(x: torch.Tensor, conv: nn.Conv2d, attr: str) -> torch.Tensor:
    padding, stride, dilation = _geometry(conv)
    return _CONV(x, conv.weight, conv.bias, padding, stride, dilation, conv.groups, attr, [],
                 "none" if attr == "gelu" else "")


def _onednn_conv_add_relu(x: torch.Tensor, other: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    # bf16: the ReLU after the add is applied in place, because where oneDNN cannot fuse a shape
    # torch falls back to its add_relu kernel, which has no bf16 (torch 2.13: grouped convolutions).
    bf16 = x.dtype == torch.bfloat16
    padding, stride, dilation = _geometry(conv)
    out = _CONV.binary(
        x, other, conv.weight, conv.bias, padding, stride, dilation,
        conv.groups, "add", None, None if bf16 else "relu", [], None,
    )
    return out.relu_() if bf16 else out


def _onednn_linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    return _LINEAR(x, lin.weight, lin.bias, "none", [], "")


# Self-check tolerances per dtype: bf16 rounds every output to 8 bits of mantissa.
_CHECK_TOL = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (2e-2, 2e-2)}


def _self_check(kind: str, dtype: torch.dtype = torch.float32) -> bool:
    """Run one kind of kernel once per dtype on a tiny input against the public ops; False (with a
    warning) when it raises or disagrees, e.g. after a torch upgrade changed the private operator."""
    if (kind, dtype) in _verified:
        return _verified[(kind, dtype)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 5, 5, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=2).to(dtype)
    other = torch.randn(1, 4, 5, 5, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    lin = nn.Linear(4, 6).to(dtype)
    tokens = torch.randn(7, 4, generator=gen).to(dtype)
    rtol, atol = _CHECK_TOL[dtype]
    checks: Dict[str, Callable[[], List[torch.Tensor]]] = {
        "conv_act": lambda: [
            t for attr in ("none", "relu", "gelu")
            for t in (_onednn_conv_act(x, conv, attr), reference_act(conv(x), attr))
        ],
        "conv_add_relu": lambda: [_onednn_conv_add_relu(x, other, conv), F.relu(conv(x) + other)],
        "linear": lambda: [_onednn_linear(tokens, lin), lin(tokens)],
    }
    try:
        with torch.no_grad():
            pairs = checks[kind]()
        ok = all(
            a.shape == b.shape and a.dtype == b.dtype and torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol)
            for a, b in zip(pairs[::2], pairs[1::2])
        )
        problem = "its result differs from the public ops"
    except Exception as e:  # any failure of a private operator means: do not use it
        ok, problem = False, f"{type(e).__name__}: {e}"
    if not ok:
        warnings.warn(
            f"hrformer: the oneDNN {kind} kernel ({str(dtype).replace('torch.', '')}) failed its self-check "
            f"({problem}); fused models use public "
            f"PyTorch ops for it instead (same outputs, slower). Set {ENV_VAR}=0 to silence this.",
            RuntimeWarning, stacklevel=3,
        )
    _verified[(kind, dtype)] = ok
    return ok


def fastest_of(candidates: Dict[str, Callable[[], object]], rounds: int = 3) -> str:
    """The name of the candidate with the shortest best-of-``rounds`` time, timed alternately after
    one warm-up call each: how the fused layers choose between equivalent computations whose speed
    depends on the CPU (a few milliseconds, once per kind of input)."""
    best = dict.fromkeys(candidates, float("inf"))
    for run in candidates.values():
        run()
    for _ in range(rounds):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return min(best, key=best.__getitem__)


def conv_act(x: torch.Tensor, conv: nn.Conv2d, attr: str) -> torch.Tensor:
    """``act(conv(x))`` (BatchNorm already folded into ``conv``), one oneDNN kernel where allowed."""
    if active(x) and conv_pays(x, conv) and _self_check("conv_act", x.dtype):
        return _onednn_conv_act(x, conv, attr)
    return reference_act(reference_conv(x, conv), attr)


def conv_add_act(x: torch.Tensor, other: torch.Tensor, conv: nn.Conv2d, attr: str) -> torch.Tensor:
    """``act(conv(x) + other)`` (the residual add of HRNet blocks); oneDNN fuses ReLU after the add."""
    if (attr == "relu" and active(x) and conv_pays(x, conv) and other.is_contiguous(memory_format=torch.channels_last)
            and _self_check("conv_add_relu", x.dtype)):
        return _onednn_conv_add_relu(x, other, conv)
    return reference_act(reference_conv(x, conv) + other, attr)


def linear(x: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    """``lin(x)`` with oneDNN's matmul where it pays: up to 1.6x faster than MKL's on the large,
    narrow token matrices of the high-resolution branches (e.g. 27440 x 78 -> 234 at HRFormer-B)."""
    if active(x) and linear_pays(x, lin) and _self_check("linear", x.dtype):
        return _onednn_linear(x, lin)
    return F.linear(x, lin.weight, lin.bias)

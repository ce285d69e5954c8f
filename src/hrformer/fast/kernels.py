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
from typing import Any, Callable, ContextManager, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

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
# convolutions then run as a plain GEMM (measured on 2 AMD EPYC cores). Linears are timed instead
# (see onednn_matmul_faster).
MIN_POINTWISE_CONV_OUTPUT = 1 << 16
MIN_MACS = 8_000_000

_AVAILABLE = _CONV is not None and _LINEAR is not None and torch.backends.mkldnn.is_available()
_REORDER_CONV = getattr(_MKLDNN, "_reorder_convolution_weight", None)
_REORDER_LINEAR = getattr(_MKLDNN, "_reorder_linear_weight", None)
# oneDNN runs bf16 where the CPU has AVX512-BF16 / AMX (natively) or AVX-512 BW/VL/DQ (emulated);
# elsewhere (AVX2 only) the bf16 kernels raise, so bf16 models keep the public ops there.
_is_bf16_supported = getattr(_MKLDNN, "_is_mkldnn_bf16_supported", None)
_BF16 = _AVAILABLE and _is_bf16_supported is not None and bool(_is_bf16_supported())
_KERNEL_DTYPES = (torch.float32, torch.bfloat16) if _BF16 else (torch.float32,)


def switch_from_environment(var: str) -> bool:
    """Whether the on/off switch ``var`` is on: unset or anything but 0 / false / off / no."""
    return os.environ.get(var, "1").strip().lower() not in ("0", "false", "off", "no")


_enabled = switch_from_environment(ENV_VAR)
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


def running() -> bool:
    """Whether the kernels may run now (inside :func:`kernels_for` a finite plain input)."""
    return _state.active


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


class ConvGeometry(NamedTuple):
    """What the kernels need of a convolution besides its tensors, read once per fused unit (not per
    call): the operator arguments, the smallest input (in elements) for which a oneDNN call is
    worth its fixed cost (any for spatial kernels: they take oneDNN anyway; large outputs only for
    1x1 ones), and whether it is a matrix product of channels-last tokens (1x1, no stride, padding
    or groups)."""

    padding: List[int]
    stride: List[int]
    dilation: List[int]
    groups: int
    min_numel: int
    matmul: bool


def conv_geometry(conv: nn.Conv2d) -> ConvGeometry:
    min_numel = 0
    if conv.kernel_size == (1, 1):
        # pays when B*H*W * out >= MIN_POINTWISE_CONV_OUTPUT or B*H*W * out * in / groups >= MIN_MACS
        out, macs = conv.out_channels, conv.out_channels * conv.in_channels // conv.groups
        pixels = min(-(-MIN_POINTWISE_CONV_OUTPUT // out), -(-MIN_MACS // max(macs, 1)))
        min_numel = pixels * conv.in_channels
    padding, stride = _pair(conv.padding), _pair(conv.stride)
    matmul = conv.kernel_size == (1, 1) and padding == [0, 0] and stride == [1, 1] and conv.groups == 1
    return ConvGeometry(padding, stride, _pair(conv.dilation), conv.groups, min_numel, matmul)


_REFERENCE_ACTS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"none": lambda t: t, "relu": F.relu, "gelu": F.gelu}


def reference_act(x: torch.Tensor, attr: str) -> torch.Tensor:
    return _REFERENCE_ACTS[attr](x)


def weight_and_bias(module: nn.Module) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``module.weight, module.bias``, read from its parameter dict: nn.Module's attribute fallback
    costs about 1 us per read on 2-core CPUs, and a fused forward reads a few thousand. A module that
    keeps them elsewhere (a parametrization, plain tensors) is read through its attributes."""
    params = module._parameters
    if "weight" in params and "bias" in params:
        return params["weight"], params["bias"]
    return module.weight, module.bias


def _pair(v) -> List[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(i) for i in v]


def _onednn_conv_act(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], g: ConvGeometry, attr: str
) -> torch.Tensor:
    return _CONV(x, weight, bias, g.padding, g.stride, g.dilation, g.groups, attr, [],
                 "none" if attr == "gelu" else "")


def _onednn_conv_add_relu(
    x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], g: ConvGeometry
) -> torch.Tensor:
    # torch fuses the add and the ReLU into oneDNN's convolution only for an ungrouped convolution
    # of a channels-last input; elsewhere it falls back to its add_relu kernel, which has no bf16.
    # So a bf16 convolution outside that case takes its ReLU in place afterwards (a second pass,
    # 2.4x the time of the fused kernel for a batch-8 stage-1 unit on an AMX Xeon).
    # (A reordered weight counts as channels-last there.)
    fused_relu = g.groups == 1 and (weight.is_mkldnn or _strictly_channels_last(x))
    separate_relu = x.dtype == torch.bfloat16 and not fused_relu
    out = _CONV.binary(
        x, other, weight, bias, g.padding, g.stride, g.dilation,
        g.groups, "add", None, None if separate_relu else "relu", [], None,
    )
    return out.relu_() if separate_relu else out


def _strictly_channels_last(x: torch.Tensor) -> bool:
    """Channels-last strides that are not also contiguous ones (those torch takes as channels-last)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def onednn_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], attr: str = "none",
    owner: Optional[nn.Module] = None,
) -> torch.Tensor:
    """``act(x @ weight.T + bias)`` for (..., C) tokens as one oneDNN matmul with the activation
    (``attr``: "none", "relu", "gelu") as post-op; callers run it where
    :func:`onednn_matmul_faster` said so. ``owner``: the fused module that keeps ``weight``
    reordered (:func:`packed_weight`)."""
    return _LINEAR(x, _packed_matrix(owner, weight, x), bias, attr, [], "none" if attr == "gelu" else "")


# Self-check tolerances per dtype: bf16 rounds every output to 8 bits of mantissa.
_CHECK_TOL = {torch.float32: (1e-4, 1e-5), torch.bfloat16: (2e-2, 2e-2)}


def _self_check(kind: str, dtype: torch.dtype = torch.float32) -> bool:
    """Run one kind of kernel once per dtype on a tiny input against the public ops; False (with a
    warning) when it raises or disagrees, e.g. after a torch upgrade changed the private operator."""
    verified = _verified.get((kind, dtype))
    if verified is not None:
        return verified
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 5, 5, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.random.fork_rng(devices=[]):  # the layers' initialisation leaves the caller's random state alone
        conv = nn.Conv2d(4, 4, 3, padding=1, groups=2).to(dtype)
        dense_conv = nn.Conv2d(4, 4, 1).to(dtype)
        lin = nn.Linear(4, 6).to(dtype)
    other = torch.randn(1, 4, 5, 5, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    tokens = torch.randn(7, 4, generator=gen).to(dtype)
    rtol, atol = _CHECK_TOL[dtype]
    checks: Dict[str, Callable[[], List[torch.Tensor]]] = {
        "conv_act": lambda: [
            t for attr in ("none", "relu", "gelu")
            for t in (_onednn_conv_act(x, conv.weight, conv.bias, conv_geometry(conv), attr),
                      reference_act(conv(x), attr))
        ],
        "conv_add_relu": lambda: [
            t for c in (conv, dense_conv)
            for t in (_onednn_conv_add_relu(x, other, c.weight, c.bias, conv_geometry(c)), F.relu(c(x) + other))
        ],
        "linear": lambda: [
            t for attr in ("none", "relu", "gelu")
            for t in (onednn_matmul(tokens, lin.weight, lin.bias, attr), reference_act(lin(tokens), attr))
        ],
        # the kernels called directly, not through _onednn_conv_act: a broken conv_act kernel
        # disables conv_act alone
        "packed": lambda: [
            _CONV(x, _reordered_conv(conv, x), conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups,
                  "relu", [], ""), F.relu(conv(x)),
            _onednn_conv_add_relu(x, other, _reordered_conv(dense_conv, x), dense_conv.bias, conv_geometry(dense_conv)),
            F.relu(dense_conv(x) + other),
            _LINEAR(tokens, _REORDER_LINEAR(lin.weight, len(tokens)), lin.bias, "none", [], ""), lin(tokens),
        ],
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


def _conv_pays(
    x: torch.Tensor, weight: torch.Tensor, geometry: ConvGeometry, kind: str, on: Optional[bool] = None
) -> bool:
    return ((active(x) if on is None else on) and x.numel() >= geometry.min_numel and weight.dtype == x.dtype
            and _self_check(kind, x.dtype))


# oneDNN computes with its weights in a blocked layout of its own (on AMX, bf16 pairs interleaved
# for the tiles) and reorders a plain weight into it on every call. Fused modules therefore keep each
# weight reordered once per kind of input (:func:`packed_weight`): on a 2-core AMX Xeon, with the
# bf16 conv + add + ReLU fusion of the same change, HRFormer-T / S forwards took 0.95-0.98x the time
# in bf16 and 0.96-1.00x in fp32 (batch 1 and 8), the same outputs.
# HRFORMER_PACKED_WEIGHTS=0 turns it off (the plain weights then go to every call).
PACK_ENV_VAR = "HRFORMER_PACKED_WEIGHTS"
pack_weights = switch_from_environment(PACK_ENV_VAR) and _REORDER_CONV is not None and _REORDER_LINEAR is not None

# Reordered weights kept per owner module: a model taking inputs of many sizes reorders again beyond this.
MAX_PACKED = 8


TensorState = Tuple[torch.Tensor, int, int]


def tensor_state(t: torch.Tensor) -> TensorState:
    """(``t``, its version counter, its data pointer): what a cache made from ``t`` is checked
    against (:func:`unchanged`). Not for inference tensors, which have no version counter."""
    return t, t._version, t.data_ptr()


def unchanged(state: Optional[TensorState], t: torch.Tensor) -> bool:
    """Whether ``t`` is the tensor of ``state``, neither changed in place (an in-place op, an
    optimizer step, ``load_state_dict``: all bump the version counter) nor given new storage since."""
    return state is not None and state[0] is t and state[1] == t._version and state[2] == t.data_ptr()


def packed_weight(
    owner: Optional[nn.Module], weight: torch.Tensor, key: Tuple, pack: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``weight`` as ``pack()`` reorders it for oneDNN (inputs described by ``key``), kept in
    ``owner`` (the fused module whose weight it is) while ``weight`` is the same tensor, unchanged:
    a new tensor, an in-place change (its version counter) or new storage reorders it again;
    ``weight`` itself where nothing may be kept (no owner, packing off or failing its self-check,
    an inference tensor, which has no version counter). For a caller whose kernels are on."""
    if owner is None or not pack_weights or weight.is_inference() or not _self_check("packed", weight.dtype):
        return weight
    kept_all = owner.__dict__.get("_packed")
    if kept_all is None:
        kept_all = owner.__dict__["_packed"] = {}
    kept = kept_all.get(key)
    if kept is not None and unchanged(kept[0], weight):
        return kept[1]
    if len(kept_all) >= MAX_PACKED:
        kept_all.clear()
    with torch.no_grad():
        packed = pack()
    kept_all[key] = (tensor_state(weight), packed)
    return packed


def forget_packed_weights(state: Dict[str, Any]) -> Dict[str, Any]:
    """An owner's ``__dict__`` for pickling and deep copies: without its reordered weights (oneDNN's
    opaque tensors, which neither pickle nor copy, and caches of this process)."""
    state = state.copy()
    state.pop("_packed", None)
    return state


def _packed_conv_weight(
    owner: Optional[nn.Module], weight: torch.Tensor, g: ConvGeometry, x: torch.Tensor
) -> torch.Tensor:
    return packed_weight(owner, weight, ("conv", x.shape), lambda: _reorder_conv_weight(weight, g, x))


def _reorder_conv_weight(weight: torch.Tensor, g: ConvGeometry, x: torch.Tensor) -> torch.Tensor:
    return _REORDER_CONV(weight, g.padding, g.stride, g.dilation, g.groups, list(x.shape))


def _reordered_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return _reorder_conv_weight(conv.weight, conv_geometry(conv), x)


def _packed_matrix(owner: Optional[nn.Module], weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1]
    return packed_weight(owner, weight, ("matmul", rows), lambda: _REORDER_LINEAR(weight, rows))


def conv_act(
    x: torch.Tensor, conv: nn.Conv2d, attr: str, geometry: Optional[ConvGeometry] = None, on: Optional[bool] = None,
    owner: Optional[nn.Module] = None,
) -> torch.Tensor:
    """``act(conv(x))`` (BatchNorm already folded into ``conv``), one oneDNN kernel where allowed;
    ``geometry``: ``conv_geometry(conv)``, kept by the caller; ``on``: :func:`active` for ``x``
    where the caller has it (a chain of units checks once), else it is checked here; ``owner``: the
    fused module that keeps ``conv``'s reordered weight (:func:`packed_weight`)."""
    geometry = geometry or conv_geometry(conv)
    weight, bias = weight_and_bias(conv)
    if _conv_pays(x, weight, geometry, "conv_act", on):
        return _onednn_conv_act(x, _packed_conv_weight(owner, weight, geometry, x), bias, geometry, attr)
    return reference_act(conv._conv_forward(x, weight, bias), attr)


def conv_add_act(
    x: torch.Tensor, other: torch.Tensor, conv: nn.Conv2d, attr: str, geometry: Optional[ConvGeometry] = None,
    owner: Optional[nn.Module] = None,
) -> torch.Tensor:
    """``act(conv(x) + other)`` (the residual add of HRNet blocks); oneDNN fuses ReLU after the add."""
    geometry = geometry or conv_geometry(conv)
    weight, bias = weight_and_bias(conv)
    if (attr == "relu" and other.is_contiguous(memory_format=torch.channels_last)
            and _conv_pays(x, weight, geometry, "conv_add_relu")):
        return _onednn_conv_add_relu(x, other, _packed_conv_weight(owner, weight, geometry, x), bias, geometry)
    return reference_act(conv._conv_forward(x, weight, bias) + other, attr)


# Where oneDNN's matmul (one primitive, the activation as its post-op) may replace another op with
# the same result: the window attention's projections (otherwise ATen's linear: MKL's GEMM) and the
# FFN's 1x1 units on the block's tokens (otherwise their convolutions, and a separate GELU where the
# convolution is public). Neither side wins everywhere: on 2 AMD EPYC cores (AVX-512 BF16) oneDNN's
# matmul takes 0.5-0.75x MKL's time for the projections from 3M multiply-adds on, but loses on the
# smallest ones, and a 1x1 convolution beats it on some long token matrices of a batch of 8.
# "auto" times both once per kind of input (see onednn_matmul_faster); "onednn" / "other" pins one
# (HRFORMER_MATMUL).
MATMUL_ENV_VAR = "HRFORMER_MATMUL"
MATMUL_PATHS = ("auto", "onednn", "other")


def path_from_environment(var: str, paths: Tuple[str, ...]) -> str:
    """The path (one of ``paths``) that the environment variable ``var`` pins, "auto" if unset."""
    path = os.environ.get(var, "auto").strip().lower()
    if path not in paths:
        raise InputError(f"{var}={path!r}: expected one of {paths}")
    return path


def matmul_path_from_environment() -> str:
    return path_from_environment(MATMUL_ENV_VAR, MATMUL_PATHS)


matmul_path = matmul_path_from_environment()

# (what oneDNN replaces, tokens as a power of two, in, out, dtype, post-op) -> whether oneDNN's
# matmul measured faster.
_onednn_faster: Dict[Tuple, bool] = {}


def onednn_matmul_faster(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], attr: str, other: Callable[[], object],
    other_kind: str, owner: Optional[nn.Module] = None,
) -> bool:
    """Whether ``act(x @ weight.T + bias)`` on (..., C) tokens ``x`` should run as oneDNN's matmul
    (:func:`onednn_matmul`) rather than ``other`` (a computation with the same result, named by
    ``other_kind``): the pinned :data:`matmul_path`, else whichever measured faster for tokens like
    these (same alternative, channels, dtype and post-op, token count within a factor of 2), timed
    once. For a caller whose kernels are on; ``owner``: see :func:`onednn_matmul`."""
    if weight.dtype != x.dtype or not _self_check("linear", x.dtype):
        return False
    if matmul_path != "auto":
        return matmul_path == "onednn"
    key = (other_kind, (x.numel() // x.shape[-1]).bit_length(), x.shape[-1], weight.shape[0], x.dtype, attr)
    faster = _onednn_faster.get(key)
    if faster is None:
        faster = _onednn_faster[key] = fastest_of(
            {"onednn": lambda: onednn_matmul(x, weight, bias, attr, owner), other_kind: other}
        ) == "onednn"
    return faster


def onednn_linear_faster(x: torch.Tensor, lin: nn.Linear) -> bool:
    """Whether ``lin`` on tokens like ``x`` runs faster as oneDNN's matmul than as ATen's linear
    (:func:`onednn_matmul_faster`; up to 2x on the narrow token matrices of the window attention),
    for a caller whose kernels are on."""
    weight, bias = weight_and_bias(lin)
    return onednn_matmul_faster(x, weight, bias, "none", lambda: F.linear(x, weight, bias), "linear", lin)


def linear(x: torch.Tensor, lin: nn.Linear, onednn: Optional[bool] = None) -> torch.Tensor:
    """``lin(x)``, as oneDNN's matmul if ``onednn`` (a caller's kept :func:`onednn_linear_faster`)
    and the weight is in ``x``'s dtype, else as ATen's linear; ``onednn=None``: decided here (the
    kernels on for ``x`` and oneDNN measured faster)."""
    weight, bias = weight_and_bias(lin)
    if onednn is None:
        onednn = active(x) and onednn_linear_faster(x, lin)
    if onednn and weight.dtype == x.dtype:
        return onednn_matmul(x, weight, bias, "none", lin)
    return F.linear(x, weight, bias)

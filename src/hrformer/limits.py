"""Memory and work budgets of the ``predict`` functions, checked before anything is allocated.

A 473-byte PNG of 100000x1 pixels asks the classification transform for a 78.6 GB resize, a huge
``crop_size`` or ``scale`` pads or resizes a small image to gigapixels, and a whole 3000x3000 image
through HRFormer + OCR needs more memory than most machines have. Each predict estimates the bytes a
step will need (:func:`activation_bytes` for the network, plain tensor sizes for resizes and
accumulators) and calls :func:`check_memory` first: over the budget it raises
:class:`~hrformer.errors.ResourceLimitError` with the estimate and the way out.

The budget is ``max_memory_gb`` where a predict takes it, else the environment variable
``HRFORMER_MAX_MEMORY_GB``, else :data:`DEFAULT_MAX_MEMORY_GB`. The estimates are of peak
activations under ``torch.inference_mode`` and err on the high side (:func:`floats_per_pixel`).
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from torch import nn

from .errors import InputError, ResourceLimitError

ENV_VAR = "HRFORMER_MAX_MEMORY_GB"
DEFAULT_MAX_MEMORY_GB = 8.0
# Forward passes of one image in sliding-window mode (all scales and flips together): beyond this a
# stride is far too small for the crop (every window re-computes almost the same pixels).
MAX_WINDOWS = 4096
# What a network we cannot read (no HRFormer config) is taken to hold per input pixel: HRFormer-T's.
FALLBACK_FLOATS_PER_PIXEL = 128.0
_FLOAT = 4  # bytes; estimates are for float32 activations
GB = 10**9  # decimal gigabytes, in the budget and the messages

__all__ = [
    "DEFAULT_MAX_MEMORY_GB", "ENV_VAR", "FALLBACK_FLOATS_PER_PIXEL", "MAX_WINDOWS", "activation_bytes",
    "check_memory", "check_windows", "floats_per_pixel", "format_bytes", "memory_budget",
]


def memory_budget(max_memory_gb: Optional[float] = None) -> int:
    """The budget in bytes: ``max_memory_gb``, else ``$HRFORMER_MAX_MEMORY_GB``, else 8 GB (10^9 bytes)."""
    source = "max_memory_gb"
    if max_memory_gb is None:
        text = os.environ.get(ENV_VAR)
        if text is None:
            return int(DEFAULT_MAX_MEMORY_GB * GB)
        source = ENV_VAR
        try:
            max_memory_gb = float(text)
        except ValueError as e:
            raise InputError(f"{ENV_VAR}={text!r} is not a number of gigabytes (e.g. 16)") from e
    if isinstance(max_memory_gb, bool) or not isinstance(max_memory_gb, (int, float)) or not max_memory_gb > 0:
        raise InputError(f"{source} must be a positive number of gigabytes, got {max_memory_gb!r}")
    return int(min(float(max_memory_gb), 1e6) * GB)


def format_bytes(n: float) -> str:
    """Bytes as decimal GB (or MB below 1 GB), as the budget is given."""
    if n >= GB:
        return f"{n / GB:,.1f} GB"
    return f"{n / 1e6:,.0f} MB"


def floats_per_pixel(model: nn.Module) -> float:
    """Peak activations of one forward pass, in floats per input pixel, from the model's
    architecture (``model.config``: channels, heads, window, MLP ratio, stem width) and head.

    Terms (inputs are H x W, branch i at stride 4 * 2^i): the stem (``stem_width`` channels at stride
    2: convolution, norm and activation), the stage-1 bottleneck (4 * ``stem_width`` at stride 4),
    per branch a block's input, output and FFN hidden maps and its attention logits (``heads *
    window^2`` per token), and the head: its stride-4 features and, for heads whose logits come at
    the input's resolution (segmentation), two full-resolution copies of them. Measured peaks (RSS
    of one pass at 768x768, inference mode, 2-core AMD EPYC) are 0.5-0.9x of this: HRFormer-T / S /
    B pose 299 / 355 / 554 B per pixel against 504 / 628 / 1061 estimated, + OCR 906 / 1043 / 1261
    against 1167 / 1292 / 1725.
    """
    config = getattr(model, "config", None)
    channels: Optional[Sequence[int]] = getattr(config, "channels", None)
    if not channels:
        return FALLBACK_FLOATS_PER_PIXEL
    heads = getattr(config, "heads", (1,) * len(channels))
    window = getattr(config, "window_size", 7)
    mlp = getattr(config, "mlp_ratio", 4.0)
    stem = getattr(config, "stem_width", 64)
    floats = 3 * stem / 4 + 2 * 4 * stem / 16
    for i, (c, h) in enumerate(zip(channels, heads)):
        floats += (c * (3 + 2 * mlp) + h * window * window) / (16 * 4**i)
    head = getattr(model, "head", None)
    if head is not None and getattr(head, "needs_output_size", False):
        # Dense heads (segmentation): the concatenated maps and the head's features (OCR: pixels,
        # context, their concatenation) at stride 4, then the logits at the input's resolution.
        floats += (getattr(head, "in_features", sum(channels)) + 4 * getattr(head, "num_features", 0)) / 16
        floats += 2 * getattr(head, "num_outputs", 0)
    elif head is not None:
        # Pose heatmaps, the classifier's per-branch blocks: about the maps they read, at stride 4.
        floats += sum(channels) / 16
    return floats


def activation_bytes(model: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """Estimated peak bytes of ``model``'s forward pass on a (batch, C, height, width) input
    (:func:`floats_per_pixel`, float32)."""
    return int(_FLOAT * floats_per_pixel(model) * height * width * batch)


def check_memory(nbytes: float, what: str, advice: str, max_memory_gb: Optional[float] = None) -> None:
    """Raise :class:`ResourceLimitError` when ``nbytes`` is over the budget (:func:`memory_budget`):
    "``what`` needs about N GB, over the M GB budget: ``advice``"."""
    budget = memory_budget(max_memory_gb)
    if not math.isfinite(nbytes) or nbytes > budget:
        raise ResourceLimitError(
            f"{what} needs about {format_bytes(nbytes)}, over the {format_bytes(budget)} memory budget: {advice} "
            f"(or raise the budget: max_memory_gb=... / {ENV_VAR})"
        )


def check_windows(count: int, what: str, advice: str) -> None:
    """Raise :class:`ResourceLimitError` when ``count`` forward passes exceed :data:`MAX_WINDOWS`."""
    if count > MAX_WINDOWS:
        raise ResourceLimitError(f"{what} takes {count:,} forward passes (limit {MAX_WINDOWS:,}): {advice}")

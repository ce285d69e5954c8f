"""Gradient checkpointing of one block."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Tuple

from torch.utils.checkpoint import checkpoint

from .batch_norm import frozen_running_stats


def _contexts() -> Tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    return contextlib.nullcontext(), frozen_running_stats()


def checkpointed(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` whose activations are recomputed in the backward pass instead of kept.

    The recomputation does not update BatchNorm running statistics a second time."""
    return checkpoint(fn, *args, use_reentrant=False, context_fn=_contexts)

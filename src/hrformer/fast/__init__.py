"""The inference fast path, kept apart from the reference layers: BatchNorm folding, fused modules
and the oneDNN kernels they may call. See :func:`fuse_for_inference`."""

from .fuse import FusedState, fold_batch_norm, fuse_for_inference
from .kernels import ENV_VAR, fast_path_enabled, set_fast_path
from .memory import keep_freed_memory

__all__ = ["ENV_VAR", "FusedState", "fast_path_enabled", "fold_batch_norm", "fuse_for_inference", "keep_freed_memory",
           "set_fast_path"]

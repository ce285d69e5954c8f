"""Keeping freed memory in the process, for CPU inference that allocates the same large activations
on every forward.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc hands memory that a forward pass
frees back to the operating system (large blocks are unmapped, the top of the heap is trimmed), and
the next forward faults every page of it in again: on 2-core CPUs an HRFormer-T batch-8 forward took
12,000-14,000 page faults and 20-30 ms of kernel time, 10-12% of its wall time.
:func:`keep_freed_memory` tells glibc to keep freed memory for reuse instead. The cost: the process
keeps the memory of its largest forward until it exits (as PyTorch's GPU caching allocator does).
A process-wide setting, so never made by the package on its own: call it once in a program that
serves inference (``hrformer evaluate`` does). Faster still on Linux: tcmalloc preloaded
(``LD_PRELOAD``), which the package cannot choose for a process that is already running
(:func:`allocator` says which one runs; docs/speed.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Optional

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Blocks up to this size come from the heap, not from their own mapping (mallopt takes an int).
KEPT_BLOCK_BYTES = 1 << 30
# Free memory at the top of the heap is returned to the system beyond this much (int max: never,
# in practice).
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    """The C library if it is glibc (the one with ``mallopt``), else None (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc keep memory freed by this process for its next allocations (blocks up to 1 GiB
    from the heap, the heap never trimmed) instead of returning it to the system. Returns whether
    the setting was applied: False where the C library is not glibc. Safe to call more than once;
    it has no effect on results, only on where tensors' memory comes from."""
    libc = _glibc()
    if libc is None:
        return False
    # Both, in this order: setting either one alone turns off glibc's adaptive thresholds, and
    # with only one of them more memory goes back to the system than before.
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


# Replacement allocator libraries recognised by name in the process's mappings (glibc is mapped
# into every Linux process, so a match on one of these is what tells another allocator runs).
ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def allocator(maps: str = "/proc/self/maps") -> str:
    """The ``malloc`` this process runs on, for benchmark and evaluation records: a replacement
    library mapped into it (``LD_PRELOAD`` or linked: "tcmalloc", "jemalloc", "mimalloc"), else
    "libc" (where ``/proc/self/maps`` cannot be read, e.g. not Linux: "unknown")."""
    try:
        with open(maps) as f:
            mapped = {line.rsplit("/", 1)[-1].strip() for line in f if "/" in line}
    except OSError:
        return "unknown"
    return next((name for name in ALLOCATORS if any(name in lib for lib in mapped)), "libc")

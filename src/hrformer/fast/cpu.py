"""What this CPU can do natively: model name, core count and the instruction sets that decide which
inference path is fastest (AVX2, AVX-512, AVX512-BF16, AMX). Read from ``/proc/cpuinfo`` (Linux);
elsewhere the flags are empty and only torch's own capability string is known."""

from __future__ import annotations

import functools
import os
import platform
from typing import Dict, FrozenSet, Iterable, Optional, Union

import torch

# Flags that give bf16 matrix arithmetic in hardware: AMX tiles (Sapphire Rapids and later) or the
# AVX512-BF16 dot products (Cooper Lake, Zen 4 and later). Without them oneDNN emulates bf16 with
# fp32 instructions plus conversions, slower than plain fp32.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def native_bf16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these ``/proc/cpuinfo`` flags runs bf16 matrix products natively."""
    return not NATIVE_BF16_FLAGS.isdisjoint(flags)


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> Dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (empty if unreadable)."""
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_flags() -> FrozenSet[str]:
    """This CPU's ISA flags (``/proc/cpuinfo``; empty where that file does not exist)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_model() -> str:
    """This CPU's model name, e.g. ``"Intel(R) Xeon(R) Processor"``."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def machine_info(flags: Optional[Iterable[str]] = None) -> Dict[str, Union[str, int, bool]]:
    """CPU model, core count, the ISA flags that matter for speed, and a short kind label, for
    benchmark records: ``kind`` is "amx", "avx512_bf16", "avx512" or "avx2" (the best one present)."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    isa = {
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }
    kind = next((k for k in ("amx", "avx512_bf16", "avx512", "avx2") if isa[k]), "other")
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        **isa,
        "native_bf16": native_bf16(flags),
        "machine_kind": kind,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }

"""Wall-clock timing for noisy shared machines: interleaved variants, blocks that other processes
disturbed are discarded and re-taken, medians."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch

from hrformer.fast import keep_freed_memory

_TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    """CPU ticks spent outside idle by the whole machine since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def _own_ticks() -> float:
    t = os.times()
    return (t.user + t.system) * _TICKS


@dataclass
class Samples:
    """Per-iteration seconds of one variant, and how many blocks were thrown away."""

    times: List[float] = field(default_factory=list)
    discarded: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def min(self) -> float:
        return min(self.times) if self.times else float("nan")


def calibrate(fn: Callable[[], object], block_s: float) -> int:
    """Iterations per timing block: enough to last ``block_s`` (at least one)."""
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(block_s / max(one, 1e-9)))


def timed_block(fn: Callable[[], object], iters: int, max_other_frac: float = 0.05) -> Tuple[float, bool]:
    """Mean seconds per call over ``iters`` calls, and whether the block was clean: other processes
    used at most ``max_other_frac`` of the machine meanwhile (/proc/stat ticks are 10 ms, hence the
    slack)."""
    busy0, own0 = _busy_ticks(), _own_ticks()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    dt = time.perf_counter() - t0
    others = ((_busy_ticks() - busy0) - (_own_ticks() - own0)) / _TICKS
    return dt / iters, others <= max_other_frac * dt * (os.cpu_count() or 1) + 0.02


def interleaved(
    fns: Dict[str, Callable[[], object]],
    reps: int = 5,
    warmup: int = 2,
    block_s: float = 0.3,
    max_tries: int = 4,
    quiet_only: bool = True,
) -> Dict[str, Samples]:
    """Time every function ``reps`` times in round-robin rounds (so drifts in machine speed hit all
    variants alike). A block disturbed by other processes is retried up to ``max_tries`` times
    (each disturbed try counted in ``discarded``); the last try is kept, so a busy machine still
    finishes."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    iters = {name: calibrate(fn, block_s) for name, fn in fns.items()}
    out = {name: Samples() for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            for attempt in range(max_tries if quiet_only else 1):
                t, clean = timed_block(fn, iters[name])
                if clean:
                    break
                out[name].discarded += 1
                time.sleep(1.0)
            out[name].times.append(t)  # the last try, clean or not
    return out


def seconds_per_call(fn: Callable[[], object], calls: int, device: str) -> float:
    """Mean seconds per call of ``fn`` over ``calls`` calls: CUDA events on a GPU (the kernels'
    time, not the launches'), the wall clock elsewhere."""
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def add_timing_arguments(
    ap: argparse.ArgumentParser, block_s: float = 0.5, warmup: bool = True, verb: str = "timed"
) -> None:
    """The options every interleaved benchmark takes: the reference implementation (``--reference``,
    ``--reference-path``), ``--warmup`` (if ``warmup``), ``--repeats``, ``--block`` (default
    ``block_s``), ``--threads`` and ``--no-retry``; ``verb`` says what is done to the reference."""
    ap.add_argument("--reference", help=f"MODULE:FACTORY building another implementation, {verb} as 'reference'")
    ap.add_argument("--reference-path", help="directory prepended to sys.path to import --reference")
    if warmup:
        ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timing blocks per variant")
    ap.add_argument("--block", type=float, default=block_s, help="seconds per timing block (at least one call)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-retry", action="store_true",
                    help="keep timing blocks disturbed by other processes instead of waiting and retrying")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="hrformer.keep_freed_memory() first: freed activations kept by glibc for the next "
                         "call (process-wide, so for every implementation timed)")


def configure_process(args: argparse.Namespace) -> None:
    """What the timing options set for the whole process: torch's threads and, with
    ``--keep-freed-memory``, glibc's treatment of freed memory."""
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        raise SystemExit("--keep-freed-memory: this C library is not glibc")

"""Op replays: the ops a fused forward ran, recorded once per kind of input and run again as one flat
Python function, without the module calls, checks and cache lookups between them.

A fused HRFormer-T forward is about 930 kernel calls; the Python that decides each of them (which
kernel, which kept weight, which layout) and the dispatch between them took 12-18 ms of a 53-75 ms
batch-1 forward on 2 cores (the profiler's timeline); replayed, 6-7 ms (docs/speed.md). Once
those decisions have settled for an input of some shape, dtype and strides, they give the same ops
on the same weights every time: :class:`OpReplays` records them (a
:class:`~torch.overrides.TorchFunctionMode` sees every torch call), writes them as the source of one
function (``s12 = k7(s11, k8, k9, [1, 1], ...)``, each intermediate freed after its last use, as the
forward frees it) and runs that for the next inputs like it. Same ops, same arguments: the same
outputs, bit for bit.

A recording is used only when two consecutive calls recorded the same program (the first calls time
candidate kernels and fill caches), every call in it is a tensor op or a query of a tensor's
geometry (a read of values, e.g. ``bool(t)``, makes the forward unreplayable: it keeps running as
written), and, on every call, the modules it ran are unchanged: the same submodules, no hooks, eval
mode, every parameter and buffer the same tensor, neither changed in place (its version counter) nor
given new storage. Anything else (another input shape, a switch flipped, an edited weight) records
again or runs the forward as written. ``HRFORMER_REPLAY=0`` (or :data:`enabled` = False) turns it off.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .hr_module import GLOBAL_HOOKS
from .kernels import switch_from_environment

REPLAY_ENV_VAR = "HRFORMER_REPLAY"


def enabled_from_environment() -> bool:
    return switch_from_environment(REPLAY_ENV_VAR)


enabled = enabled_from_environment()

# Calls that read a tensor's geometry, never its values: the recorded Python turned their results
# into the literals of later calls, which hold for every input of the same shape, dtype and strides.
# (data_ptr and _version: the caches' checks of their weights, which the guard repeats.)
GEOMETRY_QUERIES = frozenset({
    "shape", "dtype", "device", "layout", "ndim", "stride", "size", "dim", "numel", "storage_offset",
    "is_contiguous", "is_floating_point", "is_complex", "element_size", "requires_grad", "is_leaf", "grad_fn",
    "is_inference", "is_mkldnn", "is_cpu", "is_cuda", "is_meta", "is_sparse", "is_quantized", "is_nested",
    "data_ptr", "_version", "__len__",
})

# Calls without side effects that return their input itself where nothing needs doing (a replay
# with the same geometry gets it back too): not written into the program.
RETURNS_SELF_UNCHANGED = frozenset({"contiguous", "to"})

# Programs kept per model (each may hold weights reordered for its input size): beyond this the
# least recently used kind of input is dropped.
MAX_PROGRAMS = 8
# Recordings tried per kind of input before it runs as written for good.
MAX_RECORDINGS = 4
# Recordings per model in all: a model that meets ever new kinds of input (e.g. pose batches of every
# size up to the batch size, more kinds than MAX_PROGRAMS) stops recording beyond this, so that the
# recordings (2-2.5x a forward each) cannot outweigh the replays; the programs it has keep running.
MAX_RECORDINGS_PER_MODEL = 64

# nn.Module's global forward and forward-pre hooks (backward hooks never run in the gradient-free
# passes that replay); None where this torch keeps them elsewhere: then nothing is replayed.
_GLOBAL_FORWARD_HOOKS = None if GLOBAL_HOOKS is None else GLOBAL_HOOKS[:2]


class Unreplayable(Exception):
    """A recorded call that a replay could not repeat (it read values, or returned something else than
    tensors)."""


def _call_name(func: Callable) -> str:
    # A property read arrives as its getter's __get__ (a method-wrapper of the descriptor).
    name = getattr(func, "__name__", "")
    if name == "__get__":
        name = getattr(getattr(func, "__self__", None), "__name__", "")
    return name


class _Recorder(TorchFunctionMode):
    """Writes every torch call made inside it as a line of Python source: tensors made by earlier
    calls are local variables ``s<n>``, anything else passed in (weights, kept caches, dtypes, the
    callables) a global ``k<n>``; Python ints, bools, strings, None and finite floats are written as
    literals."""

    def __init__(self, inputs: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.lines: List[Tuple[str, List[int], List[int]]] = []  # (source, slots read, slots written)
        self.constants: List[Any] = []
        self._constant_ids: Dict[int, str] = {}
        # id -> (weak reference, slot): a dead tensor's id may come back for a new one
        self._slots: Dict[int, Tuple[weakref.ref, int]] = {}
        self._count = 0
        self.problem: Optional[str] = None
        self.inputs = [self._new_slot(t) for t in inputs]

    def _new_slot(self, t: torch.Tensor) -> int:
        slot = self._count
        self._count += 1
        self._slots[id(t)] = (weakref.ref(t), slot)
        return slot

    def _slot(self, t: torch.Tensor) -> Optional[int]:
        entry = self._slots.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def _constant(self, value: Any) -> str:
        name = self._constant_ids.get(id(value))
        if name is None:
            name = self._constant_ids[id(value)] = f"k{len(self.constants)}"
            self.constants.append(value)
        return name

    def source(self, value: Any, reads: List[int]) -> str:
        """``value`` as a Python expression of the replay; appends the slots it reads to ``reads``."""
        kind = type(value)
        if isinstance(value, torch.Tensor):
            slot = self._slot(value)
            if slot is None:
                return self._constant(value)
            reads.append(slot)
            return f"s{slot}"
        if value is None or kind in (bool, int, str):
            return repr(value)
        if kind is float and math.isfinite(value):
            return repr(value)  # repr round-trips a float exactly
        if kind in (list, tuple) and _holds_tensor(value):
            items = ", ".join(self.source(v, reads) for v in value)
            return f"[{items}]" if kind is list else f"({items},)"
        if kind is dict and _holds_tensor(value):
            if not all(type(k) in (str, int) for k in value):
                raise Unreplayable("a dict of tensors with keys other than strings and ints")
            return "{" + ", ".join(f"{k!r}: {self.source(v, reads)}" for k, v in value.items()) + "}"
        return self._constant(value)  # dtypes, devices, callables, containers without tensors

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.problem is not None or (_call_name(func) in GEOMETRY_QUERIES and not isinstance(out, torch.Tensor)):
            return out
        try:
            self._record(func, args, kwargs, out)
        except Unreplayable as e:
            self.problem = str(e)
        return out

    def _record(self, func: Callable, args: Tuple, kwargs: Dict[str, Any], out: Any) -> None:
        if args and out is args[0] and _call_name(func) in RETURNS_SELF_UNCHANGED:
            return  # e.g. contiguous() of a contiguous tensor: the replay reads the same slot or constant
        reads: List[int] = []
        call = self._constant(func) + "(" + ", ".join(
            [self.source(a, reads) for a in args] + [f"{k}={self.source(v, reads)}" for k, v in kwargs.items()]
        ) + ")"
        if out is None:  # an in-place call that returns nothing
            self.lines.append((call, reads, []))
            return
        outs = [out] if isinstance(out, torch.Tensor) else out
        if not isinstance(outs, (list, tuple)) or not outs or not all(type(t) is torch.Tensor for t in outs):
            raise Unreplayable(f"{_call_name(func) or func} returned {type(out).__name__}, not tensors")
        written = [self._new_slot(t) for t in outs]
        target = f"s{written[0]}" if isinstance(out, torch.Tensor) else "".join(f"s{s}, " for s in written)
        self.lines.append((f"{target} = {call}", reads, written))

    def program(self, outputs: Any) -> Tuple[str, List[Any]]:
        """The recorded calls as the source of ``def replay(s0, ...)`` returning ``outputs`` (tensors
        in lists / tuples), each slot deleted after its last use."""
        reads: List[int] = []
        result = self.source(outputs, reads)
        if any(self._slot(t) is None for t in _tensors(outputs)):
            raise Unreplayable("an output is not made by the recorded calls")
        last_use: Dict[int, int] = {}
        for i, (_, used, written) in enumerate(self.lines):
            for slot in (*used, *written):
                last_use[slot] = i
        kept = set(reads)
        freed_after: Dict[int, List[int]] = {}
        for slot, last in sorted(last_use.items()):
            if slot not in kept:
                freed_after.setdefault(last, []).append(slot)
        body = []
        for i, (line, _, _) in enumerate(self.lines):
            body.append(f"    {line}")
            if i in freed_after:
                body.append("    del " + ", ".join(f"s{s}" for s in freed_after[i]))
        args = ", ".join(f"s{s}" for s in self.inputs)
        return "\n".join([f"def replay({args}):", *body, f"    return {result}"]) + "\n", self.constants


def _holds_tensor(value: Any) -> bool:
    return any(True for _ in _tensors(value))


def _tensors(value: Any):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class ModuleGuard:
    """Whether the modules a program was recorded on are as they were: the same submodules under the
    same names, no forward hooks (theirs or global), eval mode, every parameter and buffer the same tensor,
    unchanged in place and in storage. ``roots``: (parent, name, module) for each recorded module
    tree, checked to be still ``parent``'s child ``name``. Checked before every replay, so in bulk
    (``map`` over flat lists): for the 1117 modules and 810 tensors of HRFormer-T 0.3 ms in a loop,
    1.2-1.6 ms before a forward, whose kernels have evicted these objects from the CPU caches."""

    def __init__(self, roots: Sequence[Tuple[nn.Module, str, nn.Module]]) -> None:
        modules = [m for _, _, root in roots for m in root.modules()]
        # the modules' attribute dicts: "training" read there, not through nn.Module's attribute
        # lookup (half the time on objects the forward evicted from the caches)
        self.attributes = [m.__dict__ for m in modules]
        # (dict, name) -> the value it held: the roots under their parents, every submodule,
        # parameter and buffer
        entries = [(parent._modules, name, module) for parent, name, module in roots] + [
            (store, name, value) for m in modules for store in (m._modules, m._parameters, m._buffers)
            for name, value in store.items()
        ]
        self.stores, self.names, self.values = (list(column) for column in zip(*entries))
        self.store_set = list({id(s): s for s in self.stores}.values())
        self.sizes = list(map(len, self.store_set))
        # Backward hooks never run in the gradient-free passes that replay.
        self.hooks = [d for m in modules for d in (m._forward_hooks, m._forward_pre_hooks)]
        self.tensors = [v for v in self.values if isinstance(v, torch.Tensor)]
        self.versions = list(map(_VERSION, self.tensors))
        self.pointers = list(map(torch.Tensor.data_ptr, self.tensors))

    @staticmethod
    def possible(roots: Sequence[Tuple[nn.Module, str, nn.Module]]) -> bool:
        """False where a tensor has no version counter to check (an inference tensor), or where this
        torch keeps its global hooks elsewhere."""
        tensors = (t for _, _, root in roots for t in (*root.parameters(), *root.buffers()))
        return _GLOBAL_FORWARD_HOOKS is not None and not any(t.is_inference() for t in tensors)

    def holds(self) -> bool:
        return (
            not any(self.hooks) and not any(_GLOBAL_FORWARD_HOOKS)
            and not any(map(_TRAINING, self.attributes))
            and list(map(len, self.store_set)) == self.sizes  # nothing added (a name removed: get -> None)
            and all(map(operator.is_, map(dict.get, self.stores, self.names), self.values))
            and list(map(_VERSION, self.tensors)) == self.versions
            and list(map(torch.Tensor.data_ptr, self.tensors)) == self.pointers
        )


_VERSION = operator.attrgetter("_version")
_TRAINING = operator.itemgetter("training")


class _Program:
    __slots__ = ("source", "constants", "run", "guard")

    def __init__(self, source: str, constants: List[Any], guard: ModuleGuard) -> None:
        self.source, self.constants, self.guard = source, constants, guard
        namespace: Dict[str, Any] = {f"k{i}": c for i, c in enumerate(constants)}
        exec(compile(source, "<hrformer replay>", "exec"), namespace)
        self.run = namespace["replay"]

    def same_as(self, other: "_Program") -> bool:
        return self.source == other.source and len(self.constants) == len(other.constants) and all(
            a is b or (not isinstance(a, torch.Tensor) and type(a) is type(b) and _equal(a, b))
            for a, b in zip(self.constants, other.constants)
        )


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # objects without a plain equality
        return False


class OpReplays:
    """The programs of one model's forward, per kind of input (shape, strides, dtype, device and the
    fast path's switches), the least recently used dropped beyond :data:`MAX_PROGRAMS`. Never pickled
    or copied: a copy records its own."""

    def __init__(self) -> None:
        self._entries: "OrderedDict[Tuple, Any]" = OrderedDict()
        self.recordings = 0

    def __reduce__(self):
        return (OpReplays, ())

    def __deepcopy__(self, memo: Dict[int, Any]) -> "OpReplays":
        return OpReplays()

    def run(
        self, forward: Callable[[torch.Tensor], Any], x: torch.Tensor,
        roots: Sequence[Tuple[nn.Module, str, nn.Module]], key: Tuple,
    ) -> Any:
        """``forward(x)``, replayed where a program for inputs like ``x`` holds, else run as written
        (and recorded while the calls settle). ``roots``: the module trees ``forward`` runs (see
        :class:`ModuleGuard`); ``key``: what else decides its ops (the caller's switches). For a
        caller whose kernels are on."""
        if not enabled or torch.overrides._is_torch_function_mode_enabled():
            return forward(x)
        key = (x.shape, x.stride(), x.storage_offset(), x.dtype, x.device, *key)
        entry = self._entries.get(key)
        if type(entry) is _Program:
            if entry.guard.holds():
                try:
                    self._entries.move_to_end(key)
                except KeyError:  # dropped by another thread meanwhile
                    pass
                return entry.run(x)
            entry = None  # recorded on modules that changed since
        attempts, previous = entry if entry is not None else (0, None)
        if (attempts >= MAX_RECORDINGS or self.recordings >= MAX_RECORDINGS_PER_MODEL
                or not ModuleGuard.possible(roots)):
            return forward(x)
        self.recordings += 1
        recorder = _Recorder([x])
        with recorder:
            out = forward(x)
        program = None
        if recorder.problem is None:
            try:
                program = _Program(*recorder.program(out), ModuleGuard(roots))
            except Unreplayable:
                pass
        if key not in self._entries and len(self._entries) >= MAX_PROGRAMS:
            self._entries.popitem(last=False)
        if program is not None and previous is not None and program.same_as(previous):
            self._entries[key] = program
        else:
            self._entries[key] = (attempts + 1, program)
        try:
            self._entries.move_to_end(key)
        except KeyError:  # dropped by another thread meanwhile
            pass
        return out

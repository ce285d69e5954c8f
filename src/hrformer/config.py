"""Architecture configurations (HRFormer paper, Table 2) and every option that changes the graph."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Mapping, Tuple

from .errors import ConfigError

BLOCK_TYPES = ("transformer", "basic")
UPSAMPLE_MODES = ("nearest", "bilinear")
_TUPLE_FIELDS = ("channels", "heads", "modules")
_BOOL_FIELDS = ("ffn_dw", "shift_windows", "rel_pos_bias", "multiscale_output", "mask_padding")
_CHOICE_FIELDS = {"block": BLOCK_TYPES, "upsample_mode": UPSAMPLE_MODES}
# Options in which the original code paths differ without changing any weight's shape.
SEMANTIC_FIELDS = ("rel_pos_bias", "upsample_mode", "mask_padding")
# What a registered architecture name does not fix: the semantics and the last stage's outputs
# (single-scale for pose, four maps otherwise), which the weights or the head decide.
NAME_FREE_FIELDS = SEMANTIC_FIELDS + ("multiscale_output",)
# Bounds far beyond any HRFormer (B: 624 channels, 4 modules, window 15), checked before anything
# is allocated, so that a corrupt or hostile config.json cannot ask for terabytes or hang.
LIMITS: Dict[str, int] = {"channels": 4096, "heads": 256, "modules": 32, "blocks": 32, "window_size": 64,
                          "stem_width": 1024, "stage1_blocks": 32}
MAX_MODEL_BYTES = 8 << 30


def is_int(value: Any) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` to Python, never a count to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class HRFormerConfig:
    """The shape of an HRFormer backbone, and the options in which the original code paths differ.

    ``channels``/``heads`` are per branch (strides 4, 8, 16, 32); ``modules`` per stage 1-4; every
    branch of a module has ``blocks`` blocks. Stage 1 is ``stage1_blocks`` bottlenecks on
    ``stem_width`` channels. ``block`` selects transformer blocks or HRNet basic blocks (Table 11);
    ``ffn_dw`` and ``shift_windows`` are the paper's FFN (Table 7) and window (Tables 8-9) ablations.

    Original-code semantics:
        rel_pos_bias: add the learned relative position bias to the attention logits (the official
            pose code never adds it).
        upsample_mode: fusion upsampling, ``"nearest"`` (official classification and segmentation
            code: nearest x2^k, then a bilinear align_corners=True resize) or ``"bilinear"``
            (official pose code and mmpose).
        multiscale_output: the last module fuses into all four branches; False keeps the stride-4
            map only (the pose models).
        mask_padding: keep the window padding out of attention (the originals let it take part).
    """

    channels: Tuple[int, int, int, int]
    heads: Tuple[int, int, int, int]
    modules: Tuple[int, int, int, int]
    blocks: int = 2
    mlp_ratio: float = 4.0
    window_size: int = 7
    stem_width: int = 64
    stage1_blocks: int = 2
    block: str = "transformer"
    ffn_dw: bool = True
    shift_windows: bool = False
    rel_pos_bias: bool = True
    upsample_mode: str = "bilinear"
    multiscale_output: bool = True
    mask_padding: bool = False

    def __post_init__(self) -> None:
        def fail(field_name: str, message: str) -> None:
            raise ConfigError(f"{field_name}: {message}, got {getattr(self, field_name)!r}")

        # Types first: a string "false" is truthy and "4" > 0 raises a bare TypeError further on.
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                fail(name, "must be True or False (a bool, not a string or number)")
        for name in _CHOICE_FIELDS:
            if getattr(self, name) not in _CHOICE_FIELDS[name]:
                fail(name, f"must be one of {_CHOICE_FIELDS[name]}")
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 4 or not all(is_int(v) and v > 0 for v in value):
                fail(name, "needs 4 positive integers (branches / stages)")
        for c, h in zip(self.channels, self.heads):
            if c % h:
                fail("heads", f"channels {c} not divisible by heads {h}")
        for name in ("blocks", "window_size", "stem_width", "stage1_blocks"):
            if not is_int(getattr(self, name)) or getattr(self, name) <= 0:
                fail(name, "must be a positive integer")
        if not is_number(self.mlp_ratio) or not math.isfinite(self.mlp_ratio) or not self.mlp_ratio > 0:
            fail("mlp_ratio", "must be a finite number > 0")
        if int(min(self.channels) * self.mlp_ratio) < 1:
            fail("mlp_ratio", f"leaves the FFN of the {min(self.channels)}-channel branch without hidden channels")
        if self.shift_windows and self.window_size < 2:
            fail("window_size", "shifted windows need a window of at least 2")
        for name, bound in LIMITS.items():
            values = getattr(self, name)
            if any(v > bound for v in (values if isinstance(values, tuple) else (values,))):
                fail(name, f"exceeds {bound}, beyond any HRFormer (a corrupt or hostile config?)")
        size = self.estimated_bytes()
        if size > MAX_MODEL_BYTES:
            raise ConfigError(
                f"this architecture would need about {size / 2**30:.1f} GiB of parameters and buffers (limit "
                f"{MAX_MODEL_BYTES / 2**30:.0f} GiB; HRFormer-B needs {HRFORMER_B_BYTES / 2**20:.0f} MiB): check "
                "channels, modules, blocks, window_size and mlp_ratio"
            )

    def estimated_bytes(self) -> int:
        """An upper estimate of the float32 parameters plus buffers of a model of this shape, computed
        without building it (checked before any allocation)."""
        hidden = [int(c * self.mlp_ratio) for c in self.channels]
        per_block = [4 * c * c + 2 * c * h + 9 * h + 16 * (c + h) for c, h in zip(self.channels, hidden)]
        window_tokens = self.window_size**2
        attention = ((2 * self.window_size - 1) ** 2 * max(self.heads) + 2 * window_tokens**2)  # table, index
        fusion = sum(c * d for c in self.channels for d in self.channels)
        total = self.stem_width * self.stem_width * 16 * self.stage1_blocks + 2 * self.stem_width * 9 * 64
        for stage in (1, 2, 3):
            branches = stage + 1
            blocks = self.modules[stage] * self.blocks
            total += blocks * sum(per_block[:branches]) + blocks * branches * attention
            total += self.modules[stage] * fusion * 9
        return 4 * total

    @property
    def num_outputs(self) -> int:
        """How many maps the backbone returns: 4, or 1 without ``multiscale_output``."""
        return 4 if self.multiscale_output else 1

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: str = "config") -> "HRFormerConfig":
        """Inverse of :meth:`to_dict`; unknown or missing fields raise a :class:`ConfigError` naming
        ``source`` and the field."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown architecture field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        for key in _TUPLE_FIELDS:
            if key not in d:
                raise ConfigError(f"{source}: missing architecture field {key!r}")
            if isinstance(d[key], list):
                d[key] = tuple(d[key])
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e

    def with_(self, **changes: Any) -> "HRFormerConfig":
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"unknown architecture field(s) {unknown}")
        for key in _TUPLE_FIELDS:
            if isinstance(changes.get(key), list):
                changes[key] = tuple(changes[key])
        return replace(self, **changes)


CONFIG_FIELDS = frozenset(f.name for f in fields(HRFormerConfig))

HRFORMER_T = HRFormerConfig(channels=(18, 36, 72, 144), heads=(1, 2, 4, 8), modules=(1, 1, 3, 2))
HRFORMER_S = HRFormerConfig(channels=(32, 64, 128, 256), heads=(1, 2, 4, 8), modules=(1, 1, 4, 2))
HRFORMER_B = HRFormerConfig(channels=(78, 156, 312, 624), heads=(2, 4, 8, 16), modules=(1, 1, 4, 2))
HRFORMER_B_BYTES = HRFORMER_B.estimated_bytes()


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: its name, config and a one-line description."""

    name: str
    config: HRFormerConfig
    description: str


def _registry() -> Dict[str, Architecture]:
    archs = []
    for size, config in (("T", HRFORMER_T), ("S", HRFORMER_S), ("B", HRFORMER_B)):
        name = f"hrformer_{size.lower()}"
        archs.append(Architecture(name, config, f"HRFormer-{size} (paper Table 2)"))
        archs.append(Architecture(
            f"{name}_hrnet", config.with_(block="basic"),
            f"HRFormer-{size} layout with HRNet basic blocks in place of transformer blocks (paper Table 11)"))
    for window in (13, 15):
        archs.append(Architecture(
            f"hrformer_b_w{window}", HRFORMER_B.with_(window_size=window),
            f"HRFormer-B with {window}x{window} windows in every stage (the paper's segmentation models)"))
    return {a.name: a for a in archs}


# The one architecture registry: ``create_model`` names, in registration order (T, S, B first).
ARCHITECTURES: Mapping[str, Architecture] = _registry()
ARCHS: Dict[str, HRFormerConfig] = {name: arch.config for name, arch in ARCHITECTURES.items()}


def shape_of(config: HRFormerConfig) -> Dict[str, Any]:
    """The fields a registered name fixes (what the weights' shapes depend on)."""
    return {k: v for k, v in config.to_dict().items() if k not in NAME_FREE_FIELDS}


def find_architecture(config: HRFormerConfig) -> "str | None":
    """The registered name whose shape is ``config``'s (semantics and last-stage outputs aside)."""
    shape = shape_of(config)
    return next((name for name, arch in ARCHITECTURES.items() if shape_of(arch.config) == shape), None)

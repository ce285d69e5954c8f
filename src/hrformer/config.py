"""Architecture configurations (HRFormer paper, Table 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Tuple

BLOCK_TYPES = ("transformer", "basic")


@dataclass(frozen=True)
class HRFormerConfig:
    """The shape of an HRFormer backbone.

    ``channels``/``heads`` are per branch (strides 4, 8, 16, 32); ``modules`` per stage 1-4; every
    branch of a module has ``blocks`` blocks. Stage 1 is ``stage1_blocks`` bottlenecks on
    ``stem_width`` channels. ``block`` selects transformer blocks or HRNet basic blocks (Table 11);
    ``ffn_dw`` and ``shift_windows`` are the paper's FFN (Table 7) and window (Tables 8-9) ablations.
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

    def __post_init__(self) -> None:
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {self.block!r}")
        if not (len(self.channels) == len(self.heads) == 4 and len(self.modules) == 4):
            raise ValueError("channels, heads and modules need 4 entries (branches / stages)")
        for c, h in zip(self.channels, self.heads):
            if c % h:
                raise ValueError(f"channels {c} not divisible by heads {h}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "HRFormerConfig":
        d = dict(d)
        for key in ("channels", "heads", "modules"):
            d[key] = tuple(d[key])
        return cls(**d)

    def with_(self, **changes: Any) -> "HRFormerConfig":
        return replace(self, **changes)


HRFORMER_T = HRFormerConfig(channels=(18, 36, 72, 144), heads=(1, 2, 4, 8), modules=(1, 1, 3, 2))
HRFORMER_S = HRFormerConfig(channels=(32, 64, 128, 256), heads=(1, 2, 4, 8), modules=(1, 1, 4, 2))
HRFORMER_B = HRFormerConfig(channels=(78, 156, 312, 624), heads=(2, 4, 8, 16), modules=(1, 1, 4, 2))

ARCHS: Dict[str, HRFormerConfig] = {
    "hrformer_t": HRFORMER_T,
    "hrformer_s": HRFORMER_S,
    "hrformer_b": HRFORMER_B,
}

"""timm-style description of the feature maps a model returns."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence


class FeatureInfo:
    """One entry per returned map: ``num_chs``, ``reduction`` (stride) and ``module``."""

    def __init__(self, entries: Sequence[Dict[str, Any]]) -> None:
        self.info: List[Dict[str, Any]] = [dict(e) for e in entries]

    def channels(self, idx: Optional[int] = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: Optional[int] = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: Optional[int] = None) -> Any:
        return self._get("module", idx)

    def _get(self, key: str, idx: Optional[int]) -> Any:
        if idx is None:
            return [e[key] for e in self.info]
        return self.info[idx][key]

    def __len__(self) -> int:
        return len(self.info)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        return self.info[idx]

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo(channels={self.channels()}, reduction={self.reduction()})"

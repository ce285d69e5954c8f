"""timm-style description of the feature maps a model returns, and timm's index selection."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import InputError, InputTypeError


class FeatureInfo:
    """One entry per returned map: ``num_chs``, ``reduction`` (stride), ``module`` (a name in
    ``model.named_modules()`` whose output holds the map) and ``index`` (the map's position in that
    output, and in :meth:`hrformer.HRFormer.forward_features`)."""

    def __init__(self, entries: Sequence[Dict[str, Any]]) -> None:
        self.info: List[Dict[str, Any]] = [dict(e) for e in entries]

    def channels(self, idx: Optional[int] = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: Optional[int] = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: Optional[int] = None) -> Any:
        return self._get("module", idx)

    def get(self, key: str, idx: Optional[int] = None) -> Any:
        """The value of ``key`` for every returned map (``idx=None``) or for one."""
        return self._get(key, idx)

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


def feature_take_indices(
    num_features: int, indices: Optional[Union[int, Sequence[int]]] = None
) -> Tuple[List[int], int]:
    """Which of ``num_features`` maps to take, as timm's ``feature_take_indices``: ``None`` takes all,
    an int ``n`` the last ``n``, a sequence those positions (negative ones count from the end).

    Returns the positions in ascending order, without repeats, and the largest one.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, bool) or not isinstance(indices, (int, Sequence)) or isinstance(indices, str):
        raise InputTypeError(f"indices must be None, an int (the last n maps) or a sequence of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 1 <= indices <= num_features:
            raise InputError(f"indices={indices}: take between 1 and {num_features} of the {num_features} maps")
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -num_features <= i < num_features:
                raise InputError(
                    f"indices={list(indices)}: {i!r} is not a map position in [-{num_features}, {num_features})"
                )
            take.append(i % num_features)
        if not take:
            raise InputError("indices is empty: name at least one map")
        take = sorted(set(take))
    return take, take[-1]

"""Keypoint metadata: names, skeleton, left/right flip pairs and OKS sigmas (pure data).

``COCO_KEYPOINTS`` restates the COCO-17 person keypoints as mmpose's ``configs/_base_/datasets/coco.py``
defines them (skeleton in its ``skeleton_info`` order, as 0-based index pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from .errors import InputError


@dataclass(frozen=True)
class KeypointInfo:
    """What a pose model's K heatmap channels mean.

    ``names[k]`` names channel k; ``skeleton`` lists the (a, b) index pairs drawn as limbs;
    ``flip_indices[k]`` is the channel that k becomes in a horizontally flipped image (left <-> right,
    used by flip test); ``sigmas[k]`` is the per-keypoint OKS falloff of the COCO metric.
    """

    names: Tuple[str, ...]
    skeleton: Tuple[Tuple[int, int], ...]
    flip_indices: Tuple[int, ...]
    sigmas: Tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if len(self.flip_indices) != k or len(self.sigmas) != k:
            raise InputError(f"names, flip_indices and sigmas must all have {k} entries")
        if sorted(self.flip_indices) != list(range(k)):
            raise InputError("flip_indices must be a permutation of range(K)")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
            raise InputError(f"skeleton indices must lie in [0, {k})")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "KeypointInfo":
        """Inverse of ``dataclasses.asdict`` (as stored in a saved ``config.json``)."""
        return cls(names=tuple(d["names"]), skeleton=tuple(tuple(p) for p in d["skeleton"]),
                   flip_indices=tuple(d["flip_indices"]), sigmas=tuple(d["sigmas"]))


_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def _coco_flip_indices() -> Tuple[int, ...]:
    # Swap every left_* with its right_* partner; unpaired keypoints (the nose) map to themselves.
    index = {name: i for i, name in enumerate(_COCO_NAMES)}

    def partner(name: str) -> str:
        if name.startswith("left_"):
            return "right_" + name[5:]
        if name.startswith("right_"):
            return "left_" + name[6:]
        return name

    return tuple(index[partner(name)] for name in _COCO_NAMES)


_COCO_LINKS = (
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
    ("right_eye", "right_ear"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
)

COCO_KEYPOINTS = KeypointInfo(
    names=_COCO_NAMES,
    skeleton=tuple((_COCO_NAMES.index(a), _COCO_NAMES.index(b)) for a, b in _COCO_LINKS),
    flip_indices=_coco_flip_indices(),
    sigmas=(
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
        0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    ),
)

__all__ = ["COCO_KEYPOINTS", "KeypointInfo"]

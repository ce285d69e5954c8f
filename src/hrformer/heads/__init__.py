"""Task heads on top of the HRFormer backbone."""

from .classification import ClassificationHead
from .pose import PoseHead
from .segmentation import SegmentationHead

__all__ = ["ClassificationHead", "PoseHead", "SegmentationHead"]

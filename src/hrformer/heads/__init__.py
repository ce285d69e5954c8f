"""Task heads on top of the HRFormer backbone, by name (``create_model(head=...)``)."""

from typing import Dict, Type

from .base import Head
from .classification import ClassificationHead
from .ocr import OCRHead
from .pose import PoseHead
from .segmentation import SegmentationHead

HEADS: Dict[str, Type[Head]] = {h.task: h for h in (ClassificationHead, PoseHead, SegmentationHead, OCRHead)}

__all__ = ["HEADS", "ClassificationHead", "Head", "OCRHead", "PoseHead", "SegmentationHead"]

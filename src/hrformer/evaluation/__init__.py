"""Reproduce the paper's numbers: COCO keypoint AP, segmentation mIoU and ImageNet top-1.

* metrics any user can call on their own predictions (:mod:`.metrics`):
  :func:`coco_keypoint_metrics` (mmpose ``CocoMetric``), :class:`SegmentationMetric` (mmseg
  ``IoUMetric``), :func:`topk_accuracy`;
* dataset readers for the usual folder layouts (:mod:`.datasets`);
* evaluation loops over a DataLoader, sharded over ``torchrun`` processes (:mod:`.runner`):
  :func:`evaluate_pose`, :func:`evaluate_segmentation`, :func:`evaluate_classification`; the
  ``hrformer evaluate`` command runs them.

COCO AP needs pycocotools: ``pip install 'hrformer[eval]'``.
"""

from .datasets import CITYSCAPES_LABEL_TO_TRAIN, CocoPoseDataset, ImageFolderDataset, SegmentationDataset
from .metrics import (
    COCO_METRIC_NAMES,
    SegmentationMetric,
    coco_keypoint_eval,
    coco_keypoint_metrics,
    coco_keypoint_results,
    oks_nms,
    topk_accuracy,
)
from .runner import (
    EvaluationResult,
    evaluate_classification,
    evaluate_pose,
    evaluate_segmentation,
    init_distributed,
    score_label_folder,
    shard_indices,
)

__all__ = [
    "CITYSCAPES_LABEL_TO_TRAIN", "COCO_METRIC_NAMES", "CocoPoseDataset", "EvaluationResult", "ImageFolderDataset",
    "SegmentationDataset", "SegmentationMetric", "coco_keypoint_eval", "coco_keypoint_metrics",
    "coco_keypoint_results", "evaluate_classification", "evaluate_pose", "evaluate_segmentation",
    "init_distributed", "oks_nms", "score_label_folder", "shard_indices", "topk_accuracy",
]

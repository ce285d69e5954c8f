"""The paper's metrics as functions of predictions: COCO keypoint AP, segmentation mIoU, top-k accuracy.

* :func:`coco_keypoint_metrics`: mmpose 1.x ``CocoMetric`` with its defaults. Each instance is
  scored ``score_mode="bbox_keypoint"`` (box score x the mean of the keypoint scores above
  ``keypoint_score_thr``; 0 when none is), OKS-NMS per image (``nms_thr``, the keypoints' OKS sigmas,
  instance areas = the crop box after padding and aspect-ratio fix), then pycocotools
  ``COCOeval(iouType="keypoints")``: the ten COCO figures.
* :class:`SegmentationMetric`: mmseg ``IoUMetric`` from one confusion matrix: aAcc, mIoU, mAcc and
  per-class IoU / Acc (classes absent from both prediction and ground truth are NaN and left out of
  the means, as ``np.nanmean``).
* :func:`topk_accuracy`: timm ``accuracy``: the fraction of images whose class is in the top k.

pycocotools is optional (``pip install 'hrformer[eval]'``); only :func:`coco_keypoint_metrics` and
:func:`coco_keypoint_eval` need it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from ..jsonfile import read_json
from ..keypoints import COCO_KEYPOINTS

__all__ = [
    "COCO_METRIC_NAMES", "SegmentationMetric", "coco_keypoint_eval", "coco_keypoint_metrics", "coco_keypoint_results",
    "load_coco_annotations", "require_pycocotools",
    "oks_iou", "oks_nms", "topk_accuracy",
]

# COCOeval(iouType="keypoints").stats, in order (mmpose's 'AP', 'AP .5', 'AP .75', 'AP (M)', ...).
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
SCORE_MODES = ("bbox_keypoint", "bbox", "keypoint")
EVAL_EXTRA = "pip install 'hrformer[eval]' (or pip install pycocotools)"


def require_pycocotools() -> Tuple[Any, Any]:
    """``(COCO, COCOeval)``, or an ImportError that says how to install them."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(f"COCO keypoint AP needs pycocotools: {EVAL_EXTRA}") from e
    return COCO, COCOeval


# --------------------------------------------------------------------------- OKS-NMS (mmpose)
def oks_iou(kpts: Tensor, others: Tensor, area: float, other_areas: Tensor, sigmas: Tensor) -> Tensor:
    """OKS (M,) between one pose ``kpts`` (K, 2) and ``others`` (M, K, 2), as mmpose's ``oks_iou``:
    ``mean_k exp(-d_k^2 / (2 * (2 sigma_k)^2 * ((a + a_m) / 2 + eps)))``."""
    variances = (sigmas * 2) ** 2
    d2 = ((others - kpts) ** 2).sum(-1)  # (M, K)
    scale = (area + other_areas) / 2 + torch.finfo(torch.float64).eps
    return torch.exp(-d2 / variances / scale.unsqueeze(-1) / 2).mean(-1)


def oks_nms(keypoints: Tensor, scores: Tensor, areas: Tensor, threshold: float = 0.9,
            sigmas: Optional[Sequence[float]] = None) -> List[int]:
    """Greedy OKS non-maximum suppression of one image's poses (mmpose ``oks_nms``): the indices
    kept, best score first. ``keypoints`` (N, K, 2), ``scores`` (N,), ``areas`` (N,); a pose is
    dropped when its OKS with a kept, better-scoring one exceeds ``threshold``."""
    keypoints = torch.as_tensor(keypoints, dtype=torch.float64)
    scores = torch.as_tensor(scores, dtype=torch.float64)
    areas = torch.as_tensor(areas, dtype=torch.float64)
    sig = torch.as_tensor(sigmas if sigmas is not None else COCO_KEYPOINTS.sigmas, dtype=torch.float64)
    # numpy's scores.argsort()[::-1], so that ties break as in mmpose
    import numpy as np

    order = torch.from_numpy(np.argsort(scores.numpy())[::-1].copy())
    keep: List[int] = []
    while order.numel() > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        overlap = oks_iou(keypoints[i], keypoints[rest], float(areas[i]), areas[rest], sig)
        order = rest[overlap <= threshold]
    return keep


# --------------------------------------------------------------------------- COCO keypoint AP
def _pose_fields(result: Any) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """keypoints (N, K, 2), keypoint scores (N, K), box scores (N,), areas (N,) of a PoseResult."""
    for name in ("keypoints", "scores"):
        if not isinstance(getattr(result, name, None), Tensor):
            raise InputTypeError(f"results must hold (image_id, PoseResult) pairs; got a {type(result).__name__} "
                                 f"without a .{name} tensor")
    keypoints = result.keypoints.detach().cpu().double()
    scores = result.scores.detach().cpu().double()
    n = keypoints.shape[0]
    box_scores = getattr(result, "box_scores", None)
    # ground-truth boxes have no detector score: 1, as mmpose's dataset gives them
    box_scores = torch.ones(n, dtype=torch.float64) if box_scores is None else box_scores.detach().cpu().double()
    areas = getattr(result, "areas", None)
    if areas is None:  # mmpose's fallback when the crop scale is unknown: the keypoints' extent
        extent = keypoints.amax(1) - keypoints.amin(1) if n else torch.zeros(0, 2, dtype=torch.float64)
        areas = extent[:, 0] * extent[:, 1]
    else:
        areas = areas.detach().cpu().double()
    return keypoints, scores, box_scores, areas


def _instance_scores(scores: Tensor, box_scores: Tensor, score_mode: str, keypoint_score_thr: float) -> Tensor:
    if score_mode == "bbox":
        return box_scores
    if score_mode == "keypoint":
        return scores.mean(-1)
    # bbox_keypoint: the mean over the confident keypoints only; none confident -> 0
    confident = scores > keypoint_score_thr
    count = confident.sum(-1)
    mean = torch.where(count > 0, (scores * confident).sum(-1) / count.clamp(min=1), torch.zeros_like(box_scores))
    return box_scores * mean


def coco_keypoint_results(
    results: Iterable[Tuple[int, Any]],
    *,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_thr: Optional[float] = 0.9,
    sigmas: Optional[Sequence[float]] = None,
    category_id: int = 1,
) -> List[Dict[str, Any]]:
    """``(image_id, PoseResult)`` pairs -> COCO keypoint results (``image_id``, ``category_id``,
    ``keypoints`` [x, y, score] * K, ``score``) after mmpose's rescoring and OKS-NMS
    (``nms_thr=None``: no NMS): the list ``COCO.loadRes`` reads, and what mmpose dumps as
    ``results.keypoints.json``."""
    if score_mode not in SCORE_MODES:
        raise InputError(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
    if nms_thr is not None and not 0 <= nms_thr <= 1:
        raise InputError(f"nms_thr must be in [0, 1] (or None: no OKS-NMS), got {nms_thr!r}")
    per_image: Dict[int, List[Tuple[Tensor, Tensor, Tensor, Tensor]]] = defaultdict(list)
    for pair in results:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputTypeError(f"results must be (image_id, PoseResult) pairs, got {type(pair).__name__}")
        image_id, result = pair
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise InputTypeError(f"image ids must be ints (COCO 'id' of the image), got {image_id!r}")
        per_image[image_id].append(_pose_fields(result))
    out: List[Dict[str, Any]] = []
    for image_id, parts in per_image.items():
        keypoints = torch.cat([p[0] for p in parts])
        scores = torch.cat([p[1] for p in parts])
        box_scores = torch.cat([p[2] for p in parts])
        areas = torch.cat([p[3] for p in parts])
        if keypoints.shape[0] == 0:
            continue
        instance_scores = _instance_scores(scores, box_scores, score_mode, keypoint_score_thr)
        keep = (oks_nms(keypoints, instance_scores, areas, nms_thr, sigmas) if nms_thr is not None
                else list(range(keypoints.shape[0])))
        for i in keep:
            triples = torch.cat([keypoints[i], scores[i].unsqueeze(-1)], dim=-1)
            out.append({"image_id": image_id, "category_id": category_id,
                        "keypoints": [float(v) for v in triples.flatten().tolist()],
                        "score": float(instance_scores[i])})
    return out


def _check_keypoint_annotations(data: Any, ann_file: str) -> None:
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise InputError(f"{ann_file}: not a COCO annotation file (needs 'images', 'annotations' and 'categories')")
    if not any(isinstance(c, dict) and c.get("keypoints") for c in data["categories"]):
        raise InputError(f"{ann_file}: a COCO annotation file without keypoint categories (another task's file? "
                         "use annotations/person_keypoints_val2017.json)")


def load_coco_annotations(ann_file: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """A COCO keypoint annotation file as a dict; a missing file, bad JSON or another task's
    annotations (no keypoint category) is one :class:`~hrformer.InputError`."""
    path = os.fspath(ann_file)
    data = read_json(path, "annotation file")
    _check_keypoint_annotations(data, path)
    return data


def coco_keypoint_eval(ann_file: Union[str, "os.PathLike[str]"], results: Union[str, "os.PathLike[str]", List[dict]],
                       sigmas: Optional[Sequence[float]] = None) -> Dict[str, float]:
    """pycocotools ``COCOeval(iouType="keypoints")`` of COCO keypoint results (a list or a results
    file) against ``ann_file``: the ten figures of :data:`COCO_METRIC_NAMES`, in [0, 1]. Rescoring
    a saved results file needs nothing else."""
    COCO, COCOeval = require_pycocotools()
    data = load_coco_annotations(ann_file)
    if not isinstance(results, list):
        path = os.fspath(results)
        results = read_json(path, "COCO results file")
        if not isinstance(results, list):
            raise InputError(f"{path}: a COCO results file is a JSON list of detections")
    if not results:
        raise InputError("no keypoint predictions to score (empty results)")
    known = {img["id"] for img in data["images"]}
    unknown = sorted({r.get("image_id") for r in results if r.get("image_id") not in known}, key=str)
    if unknown:
        raise InputError(f"results hold image ids the annotations lack: {unknown[:5]}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in results])  # loadRes adds fields in place
        evaluator = COCOeval(gt, dt, iouType="keypoints")
        k = len(results[0]["keypoints"]) // 3
        if sigmas is not None or k != len(COCO_KEYPOINTS.sigmas):
            if sigmas is None:
                raise InputError(f"{k} keypoints per pose: pass their OKS sigmas (COCO's are for 17)")
            import numpy as np

            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}


def coco_keypoint_metrics(
    results: Iterable[Tuple[int, Any]],
    ann_file: Union[str, "os.PathLike[str]"],
    *,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_thr: Optional[float] = 0.9,
    sigmas: Optional[Sequence[float]] = None,
    results_file: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> Dict[str, float]:
    """COCO keypoint AP of ``(image_id, PoseResult)`` pairs (as :func:`hrformer.pose.predict` returns
    them), with mmpose ``CocoMetric``'s defaults (module docstring): ``{"AP": ..., "AP50": ...,
    "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}`` in [0, 1].

    ``results_file``: also write the rescored, NMS-ed results there (COCO results JSON), so that
    :func:`coco_keypoint_eval` can rescore them without the network.
    """
    require_pycocotools()  # before any work: a missing extra is one clear message
    detections = coco_keypoint_results(results, score_mode=score_mode, keypoint_score_thr=keypoint_score_thr,
                                       nms_thr=nms_thr, sigmas=sigmas)
    if results_file is not None:
        with open(results_file, "w", encoding="utf-8") as f:
            json.dump(detections, f)
    return coco_keypoint_eval(ann_file, detections, sigmas)


# --------------------------------------------------------------------------- segmentation (mmseg IoUMetric)
class SegmentationMetric:
    """mmseg ``IoUMetric`` accumulated in a (num_classes, num_classes) confusion matrix (rows: ground
    truth, columns: prediction); pixels labelled ``ignore_index`` are left out.

    >>> metric = SegmentationMetric(19)
    >>> metric.update(pred_labels, target)   # (H, W) or (B, H, W) integer maps
    >>> metric.compute()["mIoU"]
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred_labels: Tensor, target: Tensor) -> None:
        """Add one image's (or a batch's) predicted labels and ground truth, same shape."""
        pred = torch.as_tensor(pred_labels)
        target = torch.as_tensor(target)
        if pred.shape != target.shape:
            raise InputError(f"prediction {tuple(pred.shape)} and ground truth {tuple(target.shape)} differ in shape")
        if pred.is_floating_point() or target.is_floating_point():
            raise InputTypeError("update takes integer label maps (argmax of the logits), not floats")
        pred = pred.reshape(-1).to("cpu", torch.int64)
        target = target.reshape(-1).to("cpu", torch.int64)
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        k = self.num_classes
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
            bad = target[(target < 0) | (target >= k)].unique()[:5].tolist()
            raise InputError(f"ground-truth labels {bad} are neither classes 0..{k - 1} nor the ignore index "
                             f"{self.ignore_index} (labelIds not converted to trainIds?)")
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= k):
            raise InputError(f"predicted labels outside 0..{k - 1}")
        self.confusion += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)

    def merge(self, other: "SegmentationMetric") -> None:
        """Add another metric's counts (e.g. gathered from other processes)."""
        if other.num_classes != self.num_classes:
            raise InputError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.confusion += other.confusion

    def compute(self) -> Dict[str, Any]:
        """``aAcc``, ``mIoU``, ``mAcc`` (fractions in [0, 1]) and per-class ``IoU`` / ``Acc`` lists
        (NaN for a class neither predicted nor present)."""
        confusion = self.confusion.double()
        intersect = confusion.diag()
        area_label = confusion.sum(1)
        area_pred = confusion.sum(0)
        union = area_label + area_pred - intersect
        if area_label.sum() == 0:
            raise InputError("no labelled pixels to score (every pixel is the ignore index, or nothing was added)")
        iou = intersect / union  # 0 / 0 -> NaN: the class takes no part in the mean
        acc = intersect / area_label
        return {
            "aAcc": float(intersect.sum() / area_label.sum()),
            "mIoU": float(iou.nanmean()),
            "mAcc": float(acc.nanmean()),
            "IoU": iou.tolist(),
            "Acc": acc.tolist(),
        }


# --------------------------------------------------------------------------- classification
def topk_accuracy(logits: Tensor, targets: Tensor, topk: Sequence[int] = (1, 5)) -> Dict[str, float]:
    """``{"top1": ..., "top5": ...}``: the fraction of rows of ``logits`` (N, C) (or of their
    top-k class indices (N, k), sorted best first) whose ``targets`` (N,) class is among the first k."""
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets).reshape(-1)
    if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
        raise InputError(f"logits must be (N, C) with one target per row; got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if targets.numel() == 0:
        raise InputError("no images to score")
    kmax = max(topk)
    if logits.is_floating_point():
        if kmax > logits.shape[1]:
            raise InputError(f"top-{kmax} of {logits.shape[1]} classes")
        ranked = logits.topk(kmax, dim=1).indices
    else:  # already the ranked class indices
        if kmax > logits.shape[1]:
            raise InputError(f"top-{kmax} needs {kmax} ranked classes per row, got {logits.shape[1]}")
        ranked = logits
    hits = ranked[:, :kmax] == targets.unsqueeze(1).to(ranked.device)
    return {f"top{k}": float(hits[:, :k].any(1).double().mean()) for k in topk}

"""The evaluation loops: a dataset through a DataLoader, the network, the metric; one process or many.

Data loading (decoding, and for pose the affine crops of every box) runs in ``DataLoader`` workers,
overlapped with the network; crops of several images share one forward pass (``batch_size`` crops).
The pose loop restates :func:`hrformer.pose.predict` over those pre-cut crops with the same public
pieces (:func:`~hrformer.pose.box_to_center_scale`, :func:`~hrformer.pose.crop`,
:func:`~hrformer.pose.flip_heatmaps`, :func:`~hrformer.pose.decode_heatmaps`), so its keypoints are
``predict``'s; segmentation calls :func:`hrformer.segmentation.predict` per image.

Distributed (``torchrun --nproc_per_node=N``, see :func:`init_distributed`): each process takes
every N-th image (no padding, so nothing is counted twice), the predictions are gathered on every
rank in dataset order and rank 0 scores them: the metrics are those of one process.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..errors import HRFormerError, InputError
from ..inference import normalize
from ..pose.pipeline import pose_settings
from .datasets import CocoPoseDataset, ImageFolderDataset, SegmentationDataset, read_image
from .metrics import SegmentationMetric, coco_keypoint_metrics, topk_accuracy

__all__ = ["EvaluationResult", "evaluate_classification", "evaluate_pose", "evaluate_segmentation",
           "init_distributed", "score_label_folder", "shard_indices"]


@dataclass
class EvaluationResult:
    """What an evaluation measured: ``metrics`` (fractions in [0, 1]; per-class lists for
    segmentation), ``num_images`` (scored, over all processes), ``num_instances`` (pose: person
    boxes), ``wall_time_s``, ``images_per_s``, ``world_size`` and the ``protocol`` options."""

    task: str
    metrics: Dict[str, Any]
    num_images: int
    wall_time_s: float
    world_size: int = 1
    num_instances: Optional[int] = None
    protocol: Dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.num_images / self.wall_time_s if self.wall_time_s > 0 else float("nan")

    def to_dict(self) -> Dict[str, Any]:
        return {"task": self.task, "metrics": self.metrics, "num_images": self.num_images,
                "num_instances": self.num_instances, "wall_time_s": self.wall_time_s,
                "images_per_s": self.images_per_s, "world_size": self.world_size, "protocol": self.protocol}


# --------------------------------------------------------------------------- processes
def init_distributed(device: Optional[torch.device] = None) -> Tuple[int, int]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment; gloo on
    CPU, nccl on CUDA, whose device is then ``cuda:LOCAL_RANK``); returns ``(rank, world_size)``.
    Without torchrun: ``(0, 1)`` and nothing is started."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_indices(length: int, rank: int, world_size: int) -> List[int]:
    """This process's share of ``length`` items: ``rank, rank + world_size, ...`` (no item twice,
    none left out, unlike ``DistributedSampler``'s padding)."""
    return list(range(rank, length, world_size))


def _gather(items: List[Any]) -> List[Any]:
    """Every process's ``items`` concatenated (on every rank); the list itself in one process."""
    rank, world = _world()
    if world == 1:
        return items
    parts: List[Any] = [None] * world
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


@contextlib.contextmanager
def _together() -> Iterator[None]:
    """Every process leaves the block together: an error in one process (a corrupt image in its
    shard) is raised in all of them, instead of the others waiting for it in the gather."""
    error: Optional[BaseException] = None
    try:
        yield
    except Exception as e:  # noqa: BLE001  (re-raised below, in every process)
        error = e
    rank, world = _world()
    if world > 1:
        messages: List[Optional[str]] = [None] * world
        dist.all_gather_object(messages, None if error is None else str(error))
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        if error is None and failed:
            raise InputError(f"process {failed[0][0]} of {world} stopped: {failed[0][1]}")
    if error is not None:
        raise error


def _sum_all(total: float) -> float:
    return float(sum(_gather([total])))


# --------------------------------------------------------------------------- loading
class _Prepared(Dataset):
    """``base[indices[i]]`` through ``prepare`` (run in the DataLoader workers); a file that cannot
    be read comes back as ``{"error": message}``, raised by the loop as one InputError."""

    def __init__(self, base: Dataset, indices: Sequence[int], prepare: Callable[[Dict[str, Any]], Dict[str, Any]]):
        self.base, self.indices, self.prepare = base, list(indices), prepare

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item = self.base[self.indices[i]]
        try:
            return self.prepare(item)
        except (HRFormerError, OSError) as e:
            return {"index": item["index"], "error": str(e)}


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers decode and crop; the main process's threads run the network


def _loader(dataset: Dataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"workers must be an int >= 0, got {workers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=list,
                      worker_init_fn=_one_thread if workers else None, pin_memory=device.type == "cuda",
                      prefetch_factor=4 if workers else None)


def _batches(loader: DataLoader, total: int, progress: bool, desc: str) -> Iterator[List[Dict[str, Any]]]:
    """The loader's batches with a progress bar on rank 0 (images done, images/s, ETA); a batch
    holding a file that could not be read raises its InputError."""
    bar = None
    if progress and _world()[0] == 0:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True, smoothing=0.1)
        except ImportError:  # the eval extra brings tqdm; without it the run is silent
            bar = None
    try:
        for batch in loader:
            for item in batch:
                if "error" in item:
                    raise InputError(item["error"])
            yield batch
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def _device_dtype(model: nn.Module) -> Tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32


def _check_eval(model: nn.Module, task: str) -> None:
    from ..inference import check_model

    check_model(model, task)


# --------------------------------------------------------------------------- pose
class _PoseCrops:
    """Worker side of the pose loop: read the image, cut the crop of every box, normalise."""

    def __init__(self, cfg: Dict[str, Any], input_size: Tuple[int, int], udp: bool) -> None:
        self.cfg, self.input_size, self.udp = cfg, input_size, udp

    def __call__(self, item: Dict[str, Any]) -> Dict[str, Any]:
        from ..pose import box_to_center_scale, crop

        image = read_image(item["path"])
        in_h, in_w = self.input_size
        center, scale = box_to_center_scale(item["boxes"], aspect_ratio=in_w / in_h)
        crops = normalize(crop(image, center, scale, self.input_size, udp=self.udp), self.cfg)
        return {**item, "crops": crops, "center": center, "scale": scale, "image_size": tuple(image.shape[-2:])}


def evaluate_pose(
    model: nn.Module,
    dataset: CocoPoseDataset,
    *,
    flip: bool = True,
    batch_size: int = 32,
    workers: int = 2,
    input_size: Optional[Tuple[int, int]] = None,
    method: Optional[str] = None,
    score_mode: str = "bbox_keypoint",
    keypoint_score_thr: float = 0.2,
    nms_thr: Optional[float] = 0.9,
    results_file: Optional[str] = None,
    progress: bool = True,
) -> EvaluationResult:
    """COCO keypoint AP of ``model`` on ``dataset`` (mmpose's top-down test: the boxes' crops,
    ``flip`` test, the model's decoding, then :func:`~hrformer.evaluation.coco_keypoint_metrics`).

    ``batch_size``: crops per forward pass (and images per loader batch); ``workers``: DataLoader
    processes reading and cropping; ``results_file``: write the COCO results JSON there (rank 0).
    Under ``torchrun`` every process must call it; all return the same result.
    """
    from ..pose import decode_heatmaps, flip_heatmaps, keypoint_info
    from ..pose.pipeline import PoseResult

    _check_eval(model, "pose")
    if not isinstance(dataset, CocoPoseDataset):
        raise InputError(f"evaluate_pose takes a CocoPoseDataset, got {type(dataset).__name__}")
    cfg, size, method = pose_settings(model, input_size, method)
    info = keypoint_info(model)
    flip_indices = info.flip_indices if info is not None else None
    if flip and flip_indices is None:
        raise InputError("the flip test needs the model's keypoint flip indices (keypoint_info); use flip=False")
    udp = method == "udp"
    device, dtype = _device_dtype(model)
    rank, world = _world()
    shard = shard_indices(len(dataset), rank, world)
    loader = _loader(_Prepared(dataset, shard, _PoseCrops(cfg, size, udp)), batch_size, workers, device)
    input_wh = torch.tensor([size[1], size[0]], dtype=torch.float64)

    def network(crops: Tensor) -> Tensor:
        out = model(crops)
        return (out[0] if isinstance(out, (list, tuple)) else out).float()

    predictions: List[Tuple[int, int, PoseResult]] = []
    start = time.perf_counter()
    with _together(), torch.inference_mode():
        for batch in _batches(loader, len(shard), progress, "pose"):
            crops = torch.cat([item["crops"] for item in batch])
            heatmaps = []
            for first in range(0, crops.shape[0], batch_size):
                x = crops[first:first + batch_size].to(device, dtype, non_blocking=True)
                maps = network(x)
                if flip:
                    maps = (maps + flip_heatmaps(network(x.flip(-1)), flip_indices, shift=not udp)) * 0.5
                heatmaps.append(maps)
            keypoints, scores = decode_heatmaps(torch.cat(heatmaps), size, method)
            keypoints, scores = keypoints.double().cpu(), scores.cpu()
            first = 0
            for item in batch:
                n = item["boxes"].shape[0]
                center, scale = item["center"], item["scale"]
                # TopdownPoseEstimator.add_pred_to_datasample: input pixels -> image pixels
                points = (keypoints[first:first + n] / input_wh * scale.unsqueeze(1) + center.unsqueeze(1)
                          - 0.5 * scale.unsqueeze(1))
                predictions.append((item["index"], item["image_id"], PoseResult(
                    keypoints=points.float(), scores=scores[first:first + n].float(), boxes=item["boxes"].float(),
                    box_scores=item["box_scores"], keypoint_names=info.names if info is not None else None,
                    skeleton=info.skeleton if info is not None else (), image_size=item["image_size"],
                    areas=(scale[:, 0] * scale[:, 1]).float())))
                first += n
    network_done = time.perf_counter()
    gathered = sorted(_gather(predictions), key=lambda p: p[0])
    sigmas = info.sigmas if info is not None else None
    metrics = coco_keypoint_metrics([(image_id, r) for _, image_id, r in gathered], dataset.ann_file,
                                    score_mode=score_mode, keypoint_score_thr=keypoint_score_thr, nms_thr=nms_thr,
                                    sigmas=sigmas, results_file=results_file if rank == 0 else None)
    wall = time.perf_counter() - start
    return EvaluationResult(
        "pose", metrics, num_images=len(gathered), wall_time_s=wall, world_size=world,
        num_instances=sum(len(r) for _, _, r in gathered),
        protocol={"boxes": "ground truth" if dataset.use_gt_boxes else "detections", "flip": flip,
                  "input_size": list(size), "decode": method, "score_mode": score_mode,
                  "keypoint_score_thr": keypoint_score_thr, "nms_thr": nms_thr,
                  "network_time_s": network_done - start})


# --------------------------------------------------------------------------- segmentation
class _SegmentationItem:
    """Worker side of the segmentation loop: read the image (the label map is read by the dataset)."""

    def __call__(self, item: Dict[str, Any]) -> Dict[str, Any]:
        return {**item, "image": read_image(item["path"])}


def _save_labels(labels: Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = labels.to(torch.uint8).cpu().contiguous()
    Image.frombytes("L", (array.shape[1], array.shape[0]), bytes(array.numpy().tobytes())).save(path)


def evaluate_segmentation(
    model: nn.Module,
    dataset: SegmentationDataset,
    *,
    scales: Optional[Sequence[float]] = None,
    flip: bool = False,
    crop_size: Optional[Tuple[int, int]] = None,
    stride: Optional[Tuple[int, int]] = None,
    batch_size: int = 1,
    workers: int = 2,
    num_classes: Optional[int] = None,
    save_dir: Optional[str] = None,
    progress: bool = True,
) -> EvaluationResult:
    """mIoU / mAcc / aAcc (mmseg ``IoUMetric``) of ``model`` on ``dataset``, each image through
    :func:`hrformer.segmentation.predict` (``scales``, ``flip``, sliding ``crop_size`` / ``stride``
    windows; ``batch_size`` windows per pass). ``save_dir``: write each predicted label map there
    as ``<name>.png`` (class indices), for :func:`score_label_folder`."""
    from ..segmentation import predict

    _check_eval(model, "segmentation")
    num_classes = num_classes or getattr(model, "num_classes", None)
    if not num_classes:
        raise InputError("num_classes: the model does not say how many classes it predicts; pass num_classes=")
    device, _ = _device_dtype(model)
    rank, world = _world()
    shard = shard_indices(len(dataset), rank, world)
    loader = _loader(_Prepared(dataset, shard, _SegmentationItem()), 1, workers, device)
    metric = SegmentationMetric(num_classes, dataset.ignore_index)
    start = time.perf_counter()
    done = 0
    with _together():
        for batch in _batches(loader, len(shard), progress, "segment"):
            for item in batch:
                result = predict(model, item["image"], scales=scales, flip=flip, crop_size=crop_size, stride=stride,
                                 batch_size=batch_size)
                metric.update(result.labels.cpu(), item["label"])
                if save_dir is not None:
                    _save_labels(result.labels, Path(save_dir) / (Path(item["name"]).stem + ".png"))
                done += 1
    network_done = time.perf_counter()
    if world > 1:  # every process's counts (its own among them) summed
        metric.confusion = torch.stack(_gather([metric.confusion])).sum(0)
    metrics = metric.compute()
    return EvaluationResult(
        "segmentation", metrics, num_images=int(_sum_all(done)), wall_time_s=time.perf_counter() - start,
        world_size=world,
        protocol={"scales": list(scales) if scales else [1.0], "flip": flip,
                  "mode": "slide" if crop_size else "whole", "crop_size": list(crop_size) if crop_size else None,
                  "stride": list(stride) if stride else None, "num_classes": num_classes,
                  "network_time_s": network_done - start})


def score_label_folder(dataset: SegmentationDataset, pred_dir: str, num_classes: int) -> Dict[str, Any]:
    """mIoU of label maps saved by :func:`evaluate_segmentation` (``save_dir``), without the network."""
    metric = SegmentationMetric(num_classes, dataset.ignore_index)
    from .datasets import read_label

    for i in range(len(dataset)):
        item = dataset[i]
        metric.update(read_label(Path(pred_dir) / (Path(item["name"]).stem + ".png")), item["label"])
    return metric.compute()


# --------------------------------------------------------------------------- classification
class _ClassificationItem:
    """Worker side of the classification loop: read the image and apply the model's eval transform."""

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, item: Dict[str, Any]) -> Dict[str, Any]:
        return {**item, "input": self.transform(read_image(item["path"]))}


def evaluate_classification(
    model: nn.Module,
    dataset: ImageFolderDataset,
    *,
    batch_size: int = 64,
    workers: int = 2,
    topk: Sequence[int] = (1, 5),
    progress: bool = True,
) -> EvaluationResult:
    """Top-1 / top-5 accuracy of ``model`` on an ImageFolder set, through the model's eval transform
    (:func:`hrformer.create_transform`: resize, centre crop, normalisation of its data config)."""
    from ..classification import create_transform

    _check_eval(model, "classification")
    device, dtype = _device_dtype(model)
    rank, world = _world()
    shard = shard_indices(len(dataset), rank, world)
    transform = create_transform(model)
    loader = _loader(_Prepared(dataset, shard, _ClassificationItem(transform)), batch_size, workers, device)
    ranked: List[Tuple[int, List[int], int]] = []
    kmax = max(topk)
    start = time.perf_counter()
    with _together(), torch.inference_mode():
        for batch in _batches(loader, len(shard), progress, "classify"):
            x = torch.stack([item["input"] for item in batch]).to(device, dtype, non_blocking=True)
            logits = model(x).float()
            if kmax > logits.shape[-1]:
                raise InputError(f"top-{kmax} of a {logits.shape[-1]}-class model; pass topk=(1,)")
            best = logits.topk(kmax, dim=-1).indices.cpu()
            for item, row in zip(batch, best.tolist()):
                ranked.append((item["index"], row, item["target"]))
    network_done = time.perf_counter()
    gathered = sorted(_gather(ranked), key=lambda r: r[0])
    metrics = topk_accuracy(torch.tensor([r[1] for r in gathered]), torch.tensor([r[2] for r in gathered]), topk)
    return EvaluationResult(
        "classification", metrics, num_images=len(gathered), wall_time_s=time.perf_counter() - start,
        world_size=world, protocol={"transform": repr(transform), "topk": list(topk),
                                    "network_time_s": network_done - start})

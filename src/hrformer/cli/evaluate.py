"""``hrformer evaluate pose|segment|classify --data DIR --model TAG``: the paper's numbers on a dataset.

* ``pose``: COCO keypoint AP (mmpose ``CocoMetric``) on ``DIR/annotations/person_keypoints_val2017.json``
  + ``DIR/val2017/``, person boxes from ``--boxes`` (a detection results JSON) or the ground truth;
* ``segment``: mIoU / mAcc / aAcc (mmseg ``IoUMetric``) on Cityscapes (``leftImg8bit/`` + ``gtFine/``)
  or mmseg's PASCAL-Context / COCO-Stuff / ADE20K layouts (``--dataset``);
* ``classify``: top-1 / top-5 on class folders (ImageNet val).

A progress bar (images, images/s, ETA), the metrics as a table, ``--json`` with metrics, model,
weights hash, protocol, wall time and machine. Under ``torchrun --nproc_per_node=N`` the images are
shared out over the processes (gloo on CPU, nccl on CUDA) and rank 0 reports.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import check_device, check_input, fail, user_errors
from .files import check_output, write_json
from .resolve import load_model

TASKS = {"pose": "pose", "segment": "segmentation", "classify": "classification"}


def _sha256(path: str) -> Optional[str]:
    """The sha256 of a weights file (a saved directory: its model.safetensors), None if there is none."""
    from ..weights.hub import file_sha256, saved_paths

    weights = saved_paths(path)[0] if os.path.isdir(path) else Path(path)
    return file_sha256(weights) if weights.is_file() else None


def machine(device: Any) -> Dict[str, Any]:
    """Where the numbers were measured: CPU, cores, the allocator, torch, device (GPU name)."""
    import torch

    from ..fast.cpu import cpu_model
    from ..fast.memory import allocator

    info = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "allocator": allocator(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": str(device)}
    if getattr(device, "type", "") == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(metrics: Dict[str, Any], class_names: Optional[List[str]] = None) -> str:
    """The metrics as an aligned two-column table, in percent (per-class IoU after the summary)."""
    # COCOeval's -1: no ground truth in that area range
    rows = [(name, "n/a" if value < 0 else f"{100 * value:.2f}") for name, value in metrics.items()
            if isinstance(value, float)]
    if class_names is not None and isinstance(metrics.get("IoU"), list):
        rows.append(("", ""))
        for name, iou in zip(class_names, metrics["IoU"]):
            rows.append((f"IoU {name}", "nan" if iou != iou else f"{100 * iou:.2f}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:>7}" for name, value in rows)


def _segmentation_dataset(args: argparse.Namespace, model: Any) -> Any:
    from ..evaluation import SegmentationDataset

    dataset = args.dataset
    if dataset is None:
        cfg = getattr(model, "pretrained_cfg", None)
        dataset = cfg.get("dataset") if isinstance(cfg, dict) else getattr(cfg, "dataset", None)
    if dataset is None:
        if (Path(args.data) / "leftImg8bit").is_dir():
            dataset = "cityscapes"
        else:
            fail(f"--data {args.data}: name its layout with --dataset (cityscapes, pascal_context, coco_stuff, ade20k)")
    with user_errors(f"--data {args.data}"):
        return SegmentationDataset.from_layout(args.data, dataset), dataset


def _print_report(title: str, metrics: Dict[str, Any], extra: str = "", class_names: Optional[List[str]] = None) -> None:
    print(title)
    print(format_table(metrics, class_names))
    if extra:
        print(extra)


def run(args: argparse.Namespace) -> int:
    """Run ``hrformer evaluate TASK``; returns the exit status."""
    import time

    from .. import evaluation

    task = TASKS[args.task]
    check_input(args.data, "--data")
    if args.json:
        check_output(args.json, "--json", (".json",))
    save = getattr(args, "save_predictions", None)
    if save and task == "pose":
        check_output(save, "--save-predictions", (".json",))
    device = check_device(args.device)
    if args.batch_size < 1:
        fail(f"--batch-size {args.batch_size}: must be at least 1")
    if args.workers < 0:
        fail(f"--workers {args.workers}: must be 0 or more")
    if getattr(args, "input_size", None) and min(args.input_size) < 4:
        fail(f"--input-size {args.input_size[0]} {args.input_size[1]}: sizes must be at least 4")
    if task == "pose":  # before any work: a missing extra is one line with the pip command
        from ..evaluation.metrics import require_pycocotools

        with user_errors("evaluate pose"):
            require_pycocotools()

    # a rescore needs no network: the saved predictions against the ground truth
    if getattr(args, "rescore", None):
        start = time.perf_counter()
        with user_errors(f"--rescore {args.rescore}"):
            if task == "pose":
                data = evaluation.CocoPoseDataset(args.data, args.boxes) if args.boxes else None
                ann = data.ann_file if data else Path(args.data) / "annotations" / "person_keypoints_val2017.json"
                metrics = evaluation.coco_keypoint_eval(ann, args.rescore)
            elif task == "segmentation":
                dataset, name = _segmentation_dataset(args, None)
                from ..datasets import DATASETS

                metrics = evaluation.score_label_folder(dataset, args.rescore, DATASETS[name].num_classes)
            else:
                fail("--rescore is for pose (a COCO results JSON) and segment (a folder of label PNGs)")
        _print_report(f"rescored {args.rescore}", metrics)
        if args.json:
            write_json({"task": task, "metrics": metrics, "rescored": args.rescore, "data": args.data,
                        "wall_time_s": time.perf_counter() - start, "machine": machine("cpu")}, args.json)
        return 0
    if not args.model:
        fail(f"evaluate {args.task}: give --model (or --rescore a saved predictions file)")

    with user_errors("torch.distributed"):
        rank, world = evaluation.init_distributed(device)
    if world > 1 and device.type == "cuda":
        import torch

        device = torch.device("cuda", torch.cuda.current_device())
    resolved = load_model(args.model, args.weights, task=task, source_flag="--model")
    model = resolved.model.eval().to(device)
    if device.type == "cpu":
        from ..fast import keep_freed_memory

        # A process that runs thousands of forwards: freed activations are kept for the next one.
        keep_freed_memory()
    if args.fuse:
        with user_errors("--fuse"):
            model.fuse_for_inference()
    progress = args.progress and rank == 0
    class_names = None
    with user_errors(f"--data {args.data}"):
        if task == "pose":
            dataset = evaluation.CocoPoseDataset(args.data, args.boxes, box_score_thr=args.box_score_thr)
            result = evaluation.evaluate_pose(
                model, dataset, flip=args.flip, batch_size=args.batch_size, workers=args.workers,
                input_size=tuple(args.input_size) if args.input_size else None, results_file=save, progress=progress)
        elif task == "segmentation":
            dataset, name = _segmentation_dataset(args, model)
            from ..datasets import DATASETS

            class_names = list(DATASETS[name].classes)
            result = evaluation.evaluate_segmentation(
                model, dataset, scales=args.scales, flip=args.flip,
                crop_size=tuple(args.crop_size) if args.crop_size else None,
                stride=tuple(args.stride) if args.stride else None, batch_size=args.batch_size,
                workers=args.workers, save_dir=save, progress=progress)
            result.protocol["dataset"] = name
        else:
            dataset = evaluation.ImageFolderDataset(args.data)
            result = evaluation.evaluate_classification(model, dataset, batch_size=args.batch_size,
                                                        workers=args.workers, progress=progress)
    if rank == 0:
        extra = (f"{result.num_images} images" + (f", {result.num_instances} persons" if result.num_instances else "")
                 + f", {result.wall_time_s:.1f} s ({result.images_per_s:.2f} images/s), {world} process(es)")
        _print_report(f"{args.task}: {resolved.description} on {args.data}", result.metrics, extra, class_names)
        if save:
            print(f"wrote {save}")
        if args.json:
            weights = args.weights or (args.model if os.path.exists(args.model) else None)
            report = {**result.to_dict(), "model": args.model, "weights": weights,
                      "weights_sha256": _sha256(weights) if weights else None, "data": args.data,
                      "boxes": getattr(args, "boxes", None), "machine": machine(device),
                      "command": ["hrformer", "evaluate", *sys.argv[2:]] if sys.argv[1:2] == ["evaluate"] else None}
            write_json(report, args.json)
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def default_workers() -> int:
    """Workers overlap decoding with the network only where cores are left over for them: measured on
    2 cores, the loop reached 0.98x the network alone without workers and 0.72x with 2
    (benchmarks/RESULTS.md, evaluation loop)."""
    return min(4, (os.cpu_count() or 1) // 4)


def _common(p: argparse.ArgumentParser, data_help: str, batch_help: str, batch_default: int) -> None:
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--model", help="arch.tag with trained weights, a saved model directory / .safetensors, "
                                   "hf-hub:org/name, an original checkpoint, or a bare arch with --weights")
    p.add_argument("--weights", help="a checkpoint for --model (an architecture or tag)")
    p.add_argument("--batch-size", type=int, default=batch_default, help=batch_help)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="DataLoader processes reading the images (default: a quarter of the CPU cores, at most 4; "
                        f"here {default_workers()}): on a 2-core machine workers only take CPU from the network")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...); under torchrun cuda means "
                                                   "cuda:LOCAL_RANK")
    p.add_argument("--fuse", action="store_true", help="fuse_for_inference() first (BatchNorm folded, fast kernels)")
    p.add_argument("--json", help="write metrics, model, weights hash, protocol, wall time and machine here")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def add_parser(sub: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``evaluate pose|segment|classify`` on ``sub``."""
    p = sub.add_parser("evaluate", help="reproduce the paper's numbers: COCO AP, mIoU, top-1 on a dataset folder")
    tasks = p.add_subparsers(dest="task", required=True)

    pose = tasks.add_parser("pose", help="COCO keypoint AP (mmpose CocoMetric; needs pip install 'hrformer[eval]')")
    _common(pose, "the COCO root: annotations/person_keypoints_val2017.json and val2017/",
            "crops per forward pass (default 32)", 32)
    pose.add_argument("--boxes", help="person detections, COCO results JSON (e.g. "
                                      "COCO_val2017_detections_AP_H_56_person.json); default: ground-truth boxes")
    pose.add_argument("--box-score-thr", type=float, default=0.0, help="keep boxes scoring at least this (default 0)")
    pose.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                      help="flip test (default on, as the released configs)")
    pose.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                      help="network input size (default: the weights' or 256 192)")
    pose.add_argument("--save-predictions", metavar="FILE.json", help="the COCO keypoint results (after OKS-NMS)")
    pose.add_argument("--rescore", metavar="FILE.json", help="score a saved results file instead of running a model")
    pose.set_defaults(func=run)

    seg = tasks.add_parser("segment", help="mIoU / mAcc / aAcc (mmseg IoUMetric)")
    _common(seg, "the dataset root: Cityscapes (leftImg8bit/, gtFine/) or mmseg's converted layout",
            "sliding windows per forward pass (default 1)", 1)
    seg.add_argument("--dataset", choices=("cityscapes", "pascal_context", "coco_stuff", "ade20k"),
                     help="the layout under --data (default: the model's dataset)")
    seg.add_argument("--scales", type=float, nargs="+", help="test scales, logits summed (paper: 0.75 1 1.25 --flip)")
    seg.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False, help="add the flipped image")
    seg.add_argument("--crop-size", type=int, nargs=2, metavar=("H", "W"), help="sliding windows (default: whole)")
    seg.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="window step (default 2/3 of the crop)")
    seg.add_argument("--save-predictions", metavar="DIR", help="write each predicted label map as DIR/<name>.png")
    seg.add_argument("--rescore", metavar="DIR", help="score saved label PNGs instead of running a model")
    seg.set_defaults(func=run)

    cls = tasks.add_parser("classify", help="top-1 / top-5 on class folders (ImageNet val)")
    _common(cls, "class folders: DIR/<class>/<image> (or an ImageNet root with val/)",
            "images per forward pass (default 64)", 64)
    cls.set_defaults(func=run)
    return p


__all__ = ["add_parser", "format_table", "machine", "run"]

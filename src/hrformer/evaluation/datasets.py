"""Readers for the evaluation sets in the folder layouts people download.

* :class:`CocoPoseDataset`: COCO val2017 for top-down pose, ``ROOT/annotations/person_keypoints_val2017.json``
  + ``ROOT/val2017/``, person boxes from a detection results file (mmpose's ``bbox_file``: category 1,
  score >= ``box_score_thr``, ``[x, y, w, h]`` -> ``x1, y1, x + w, y + h``) or the ground-truth boxes
  (mmpose ``use_gt_bbox``: no crowds, at least one labelled keypoint, clipped to the image).
* :class:`SegmentationDataset`: images + label maps; :meth:`~SegmentationDataset.cityscapes`
  (``leftImg8bit/val/<city>/*_leftImg8bit.png`` + ``gtFine/val/<city>/*_gtFine_labelIds.png``,
  labelIds -> the 19 trainIds, everything else 255) and :meth:`~SegmentationDataset.folders` (mmseg's
  converted layouts of PASCAL-Context 59, COCO-Stuff 171 and ADE20K, ``reduce_zero_label`` where the
  dataset's 0 is "background / unlabelled").
* :class:`ImageFolderDataset`: ImageNet val as class folders (torchvision ``ImageFolder``: classes are
  the sorted folder names).

Items are plain dicts of tensors (one image each): what :mod:`.runner` feeds through a
``torch.utils.data.DataLoader``. A missing folder, an empty set, a box on an image the annotations
lack are :class:`~hrformer.InputError` at construction; nothing is skipped silently.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import HRFormerError, InputError
from ..jsonfile import read_json
from ..image import load_image
from .metrics import load_coco_annotations

__all__ = ["CITYSCAPES_LABEL_TO_TRAIN", "CocoPoseDataset", "ImageFolderDataset", "SEGMENTATION_LAYOUTS",
           "SegmentationDataset", "read_image", "read_label"]

PathLike = Union[str, "os.PathLike[str]"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Cityscapes labelIds -> trainIds (cityscapesScripts labels.py); every other id is ignored (255).
CITYSCAPES_LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                             25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def read_image(path: PathLike) -> Tensor:
    """An image file -> float32 (3, H, W) RGB in [0, 1]; an unreadable or corrupt file is an
    :class:`~hrformer.InputError` naming it."""
    try:
        return load_image(os.fspath(path))
    except FileNotFoundError as e:
        raise InputError(f"image {os.fspath(path)!r}: no such file") from e
    except (HRFormerError, OSError, ValueError, SyntaxError) as e:  # truncated / corrupt files: OSError, SyntaxError
        raise InputError(f"image {os.fspath(path)!r}: cannot be read ({e})") from e


def read_label(path: PathLike) -> Tensor:
    """A label PNG (mode L or P: the palette indices are the labels) -> int64 (H, W)."""
    from PIL import Image

    name = os.fspath(path)
    try:
        with Image.open(name) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise InputError(f"label map {name!r}: mode {img.mode}; expected 8-bit class indices (L or P)")
            w, h = img.size
            data = bytearray(img.tobytes())
    except FileNotFoundError as e:
        raise InputError(f"label map {name!r}: no such file") from e
    except (OSError, SyntaxError) as e:
        raise InputError(f"label map {name!r}: cannot be read ({e})") from e
    return torch.frombuffer(data, dtype=torch.uint8).view(h, w).long()


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        raise InputError(f"{path}: no such folder ({what}); expected the layout {layout}")


# --------------------------------------------------------------------------- COCO pose
class CocoPoseDataset(Dataset):
    """COCO keypoint images with their person boxes, one item per image that has boxes:
    ``{"index", "image_id", "path", "boxes" (N, 4) float64 xyxy, "box_scores" (N,) float32}``.

    ``root``: the COCO folder (``annotations/person_keypoints_val2017.json`` and ``val2017/``;
    ``ann_file`` / ``image_dir`` override). ``boxes``: a detection results JSON (COCO format), or
    None for the ground-truth boxes. An image id in ``boxes`` that the annotations lack is an error.
    """

    LAYOUT = "ROOT/annotations/person_keypoints_val2017.json and ROOT/val2017/*.jpg"

    def __init__(self, root: PathLike, boxes: Optional[PathLike] = None, *, ann_file: Optional[PathLike] = None,
                 image_dir: Optional[PathLike] = None, box_score_thr: float = 0.0, split: str = "val2017") -> None:
        root = Path(root)
        _require_dir(root, "the COCO root", self.LAYOUT)
        self.ann_file = Path(ann_file) if ann_file is not None else root / "annotations" / f"person_keypoints_{split}.json"
        self.image_dir = Path(image_dir) if image_dir is not None else root / split
        if not self.ann_file.is_file():
            raise InputError(f"{self.ann_file}: no such annotation file; expected the layout {self.LAYOUT}")
        _require_dir(self.image_dir, "the images", self.LAYOUT)
        data = load_coco_annotations(self.ann_file)
        self.images = {int(img["id"]): img for img in data["images"]}
        self.use_gt_boxes = boxes is None
        per_image: "OrderedDict[int, List[Tuple[List[float], float]]]" = OrderedDict()
        if boxes is None:
            for ann in data["annotations"]:
                box = self._gt_box(ann)
                if box is not None:
                    per_image.setdefault(int(ann["image_id"]), []).append((box, 1.0))
        else:
            for image_id, box, score in self._detections(Path(boxes), box_score_thr):
                per_image.setdefault(image_id, []).append((box, score))
        if not per_image:
            where = f"{boxes} (category 1, score >= {box_score_thr})" if boxes is not None else f"{self.ann_file}"
            raise InputError(f"no person boxes to evaluate in {where}")
        self.samples = [(image_id, per_image[image_id]) for image_id in sorted(per_image)]

    def _gt_box(self, ann: Dict[str, Any]) -> Optional[List[float]]:
        """mmpose's ground-truth boxes: no crowd, some keypoint labelled, clipped to the image."""
        if ann.get("iscrowd", 0) or "bbox" not in ann or "keypoints" not in ann:
            return None
        num = ann.get("num_keypoints", sum(1 for v in ann["keypoints"][2::3] if v > 0))
        if num == 0:
            return None
        img = self.images.get(int(ann["image_id"]))
        if img is None:
            raise InputError(f"{self.ann_file}: annotation {ann.get('id')} is on image {ann['image_id']}, "
                             "which the file does not list")
        x, y, w, h = (float(v) for v in ann["bbox"])
        right, bottom = img["width"] - 1, img["height"] - 1
        x1, y1 = min(max(x, 0.0), right), min(max(y, 0.0), bottom)
        x2, y2 = min(max(x + w, 0.0), right), min(max(y + h, 0.0), bottom)
        return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None

    def _detections(self, path: Path, score_thr: float) -> List[Tuple[int, List[float], float]]:
        dets = read_json(path, "detection file (--boxes)")
        if not isinstance(dets, list) or not all(isinstance(d, dict) for d in dets):
            raise InputError(f"{path}: a detection file is a JSON list of {{'image_id', 'category_id', 'bbox', "
                             "'score'}} (COCO results format)")
        out = []
        for i, det in enumerate(dets):
            if not {"image_id", "bbox", "score"} <= set(det):
                raise InputError(f"{path}, detection {i}: needs 'image_id', 'bbox' [x, y, w, h] and 'score'")
            if det.get("category_id", 1) != 1 or det["score"] < score_thr:  # persons only, as mmpose
                continue
            image_id = det["image_id"]
            if image_id not in self.images:
                raise InputError(f"{path}, detection {i}: image id {image_id} is not in {self.ann_file} "
                                 "(boxes of another split?)")
            x, y, w, h = (float(v) for v in det["bbox"][:4])
            if not (w > 0 and h > 0):
                raise InputError(f"{path}, detection {i}: box {det['bbox']} has no area")
            out.append((int(image_id), [x, y, x + w, y + h], float(det["score"])))
        return out

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_boxes(self) -> int:
        return sum(len(boxes) for _, boxes in self.samples)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image_id, boxes = self.samples[index]
        info = self.images[image_id]
        return {
            "index": index, "image_id": image_id, "path": str(self.image_dir / info["file_name"]),
            "boxes": torch.tensor([b for b, _ in boxes], dtype=torch.float64),
            "box_scores": torch.tensor([s for _, s in boxes], dtype=torch.float32),
        }


# --------------------------------------------------------------------------- segmentation
# mmseg's converted layouts: (image folder, label folder, image suffix, label suffix, reduce_zero_label).
SEGMENTATION_LAYOUTS: Dict[str, Tuple[str, str, str, str, bool]] = {
    "pascal_context": ("JPEGImages", "SegmentationClassContext", ".jpg", ".png", True),
    "coco_stuff": ("images/val2017", "annotations/val2017", ".jpg", "_labelTrainIds.png", False),
    "ade20k": ("images/validation", "annotations/validation", ".jpg", ".png", True),
}
_SPLIT_FILES = {"pascal_context": "ImageSets/SegmentationContext/val.txt"}


class SegmentationDataset(Dataset):
    """Images and their label maps: items ``{"index", "name", "path", "label" (H, W) int64}`` with the
    labels already in the network's class indices (255: ignored)."""

    def __init__(self, pairs: Sequence[Tuple[PathLike, PathLike]], *, label_map: Optional[Dict[int, int]] = None,
                 reduce_zero_label: bool = False, ignore_index: int = 255, where: str = "") -> None:
        if not pairs:
            raise InputError(f"no images with label maps found{' in ' + where if where else ''}")
        self.pairs = [(Path(i), Path(l)) for i, l in pairs]
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.lut: Optional[Tensor] = None
        if label_map is not None:
            self.lut = torch.full((256,), ignore_index, dtype=torch.int64)
            for src, dst in label_map.items():
                self.lut[src] = dst

    @classmethod
    def cityscapes(cls, root: PathLike, split: str = "val") -> "SegmentationDataset":
        """Cityscapes' own layout: ``leftImg8bit/<split>/<city>/X_leftImg8bit.png`` and
        ``gtFine/<split>/<city>/X_gtFine_labelIds.png`` (labelIds -> 19 trainIds)."""
        root = Path(root)
        layout = "ROOT/leftImg8bit/val/<city>/*_leftImg8bit.png and ROOT/gtFine/val/<city>/*_gtFine_labelIds.png"
        images, labels = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_dir(images, "Cityscapes images", layout)
        _require_dir(labels, "Cityscapes labels", layout)
        pairs = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            stem = image.name[: -len("_leftImg8bit.png")]
            label = labels / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if not label.is_file():
                raise InputError(f"{image}: no label map {label}")
            pairs.append((image, label))
        return cls(pairs, label_map=CITYSCAPES_LABEL_TO_TRAIN, where=str(images))

    @classmethod
    def folders(cls, image_dir: PathLike, label_dir: PathLike, *, img_suffix: str = ".jpg",
                seg_suffix: str = ".png", reduce_zero_label: bool = False,
                split_file: Optional[PathLike] = None) -> "SegmentationDataset":
        """An image folder and a label folder with the same file stems (``split_file``: the stems to
        take, one per line). ``reduce_zero_label``: label 0 -> 255, the others minus 1 (mmseg)."""
        image_dir, label_dir = Path(image_dir), Path(label_dir)
        layout = f"{image_dir}/NAME{img_suffix} and {label_dir}/NAME{seg_suffix}"
        _require_dir(image_dir, "images", layout)
        _require_dir(label_dir, "label maps", layout)
        if split_file is not None and Path(split_file).is_file():
            stems = [line.strip() for line in Path(split_file).read_text().splitlines() if line.strip()]
        else:
            stems = sorted(p.name[: -len(seg_suffix)] for p in label_dir.glob(f"*{seg_suffix}"))
        pairs = []
        for stem in stems:
            image, label = image_dir / f"{stem}{img_suffix}", label_dir / f"{stem}{seg_suffix}"
            if not image.is_file():
                raise InputError(f"{label}: no image {image}")
            if not label.is_file():
                raise InputError(f"{image}: no label map {label}")
            pairs.append((image, label))
        return cls(pairs, reduce_zero_label=reduce_zero_label, where=str(label_dir))

    @classmethod
    def from_layout(cls, root: PathLike, dataset: str) -> "SegmentationDataset":
        """The val split of ``dataset`` ("cityscapes", "pascal_context", "coco_stuff", "ade20k") in
        its usual layout under ``root`` (see :data:`SEGMENTATION_LAYOUTS`)."""
        if dataset == "cityscapes":
            return cls.cityscapes(root)
        if dataset not in SEGMENTATION_LAYOUTS:
            raise InputError(f"unknown dataset {dataset!r}; one of {('cityscapes', *SEGMENTATION_LAYOUTS)}")
        images, labels, img_suffix, seg_suffix, reduce_zero = SEGMENTATION_LAYOUTS[dataset]
        split = _SPLIT_FILES.get(dataset)
        return cls.folders(Path(root) / images, Path(root) / labels, img_suffix=img_suffix, seg_suffix=seg_suffix,
                           reduce_zero_label=reduce_zero, split_file=Path(root) / split if split else None)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image, label_path = self.pairs[index]
        label = read_label(label_path)
        if self.lut is not None:
            label = self.lut[label]
        if self.reduce_zero_label:  # mmseg LoadAnnotations(reduce_zero_label=True)
            label = torch.where(label == 0, self.ignore_index, label - 1)
            label = torch.where(label == self.ignore_index - 1, self.ignore_index, label)
        return {"index": index, "name": image.name, "path": str(image), "label": label}


# --------------------------------------------------------------------------- classification
class ImageFolderDataset(Dataset):
    """``ROOT/<class>/<image>`` (torchvision ``ImageFolder``): items ``{"index", "path", "target"}``,
    classes numbered in sorted folder order (ImageNet's wnid folders give the 1000-class order)."""

    def __init__(self, root: PathLike) -> None:
        root = Path(root)
        _require_dir(root, "the class folders", "ROOT/<class>/<image>.JPEG (ImageNet val: ROOT/val/n01440764/...)")
        if (root / "val").is_dir():  # the ImageNet root given instead of its val folder
            root = root / "val"
        self.root = root
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise InputError(f"{root}: no class folders (expected ROOT/<class>/<image>)")
        self.samples = [(str(p), target) for target, name in enumerate(self.classes)
                        for p in sorted((root / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise InputError(f"{root}: the class folders hold no images ({', '.join(IMAGE_SUFFIXES)})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        path, target = self.samples[index]
        return {"index": index, "path": path, "target": target}


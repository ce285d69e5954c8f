"""Top-down pose of person boxes in images: boxes -> crops -> network -> heatmaps -> keypoints.

:func:`predict` is mmpose 1.x's ``inference_topdown`` restated in torch and batched over boxes:
centre / scale of every box, the affine crop (:mod:`.geometry`), normalisation with the model's
statistics, the network (with the flip test) and the heatmap decoding (:mod:`.codec`), then the map
back to image coordinates of ``TopdownPoseEstimator.add_pred_to_datasample``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..data_config import IMAGENET_MEAN, IMAGENET_STD, cfg_value, resolve_data_config
from ..errors import InputError, InputTypeError
from ..image import load_images
from ..inference import check_model, model_device_dtype, normalize
from ..keypoints import COCO_KEYPOINTS, KeypointInfo
from ..limits import activation_bytes, check_memory
from .codec import DECODE_METHODS, check_flip_indices, decode_heatmaps, flip_heatmaps
from .geometry import SizeLike, box_to_center_scale, crop, parse_boxes

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PoseResult", "keypoint_info", "predict"]


@dataclass(frozen=True)
class PoseResult:
    """The poses found in one image's N boxes.

    ``keypoints`` (N, K, 2) float32 (x, y) image pixels; ``scores`` (N, K) the heatmap maxima;
    ``boxes`` (N, 4) float32 ``x1, y1, x2, y2`` image pixels (whatever ``bbox_format`` was given);
    ``box_scores`` (N,) the detector scores of (N, 5) boxes, else None; ``keypoint_names`` (K) and
    ``skeleton`` (limb index pairs) from the model's keypoint metadata (None / () when unknown);
    ``image_size`` (H, W); ``areas`` (N,) the crop boxes' areas in image pixels (after padding and
    aspect-ratio fix: what mmpose's CocoMetric uses for OKS-NMS), None when unknown.
    """

    keypoints: Tensor
    scores: Tensor
    boxes: Tensor
    box_scores: Optional[Tensor]
    keypoint_names: Optional[Tuple[str, ...]]
    skeleton: Tuple[Tuple[int, int], ...]
    image_size: Tuple[int, int]
    areas: Optional[Tensor] = None

    def __len__(self) -> int:
        return self.keypoints.shape[0]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (plain lists and numbers; NaN / Inf -> None): image size, keypoint names,
        skeleton and one entry per box with its box, box score, keypoints and scores."""

        def clean(values: Tensor) -> Any:
            return _finite_or_none(values.detach().cpu().double().tolist())

        instances = []
        for i in range(len(self)):
            instances.append({
                "box": clean(self.boxes[i]),
                "box_score": clean(self.box_scores[i]) if self.box_scores is not None else None,
                "keypoints": clean(self.keypoints[i]),
                "keypoint_scores": clean(self.scores[i]),
            })
        return {
            "image_size": list(self.image_size),
            "keypoint_names": list(self.keypoint_names) if self.keypoint_names is not None else None,
            "skeleton": [list(pair) for pair in self.skeleton],
            "instances": instances,
        }


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value if math.isfinite(value) else None


def keypoint_info(model: nn.Module) -> Optional[KeypointInfo]:
    """The model's keypoint metadata: ``pretrained_cfg.keypoint_info`` if set, else what its head
    knows of its outputs (``model.head.default_metadata``: COCO-17 for 17 heatmaps), else None."""
    cfg = getattr(model, "pretrained_cfg", None)
    info = cfg_value(cfg, "keypoint_info")
    if isinstance(info, KeypointInfo):
        return info
    if isinstance(info, Mapping):
        return KeypointInfo.from_dict(dict(info))
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "default_metadata") and hasattr(head, "num_outputs"):
        return head.default_metadata(head.num_outputs).get("keypoint_info")
    if getattr(model, "num_keypoints", None) == COCO_KEYPOINTS.num_keypoints:
        return COCO_KEYPOINTS
    return None


def _flip_indices_for(model: nn.Module, num_keypoints: int) -> Sequence[int]:
    indices = cfg_value(getattr(model, "pretrained_cfg", None), "flip_indices")
    if indices is None:
        info = keypoint_info(model)
        indices = info.flip_indices if info is not None else None
    if indices is None:
        raise InputError(f"flip needs the flip_indices of the model's {num_keypoints} keypoints: "
                         "pass flip_indices=... or flip=False")
    return check_flip_indices(indices, num_keypoints)


def _model_output(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if isinstance(out, (list, tuple)):  # a backbone-style output: the stride-4 map is first
        out = out[0]
    return out


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive int, got {value!r}")
    return value


def _input_size(input_size: Optional[SizeLike], cfg: Mapping) -> Tuple[int, int]:
    if input_size is None:
        size = cfg["input_size"]
        return int(size[-2]), int(size[-1])
    if (isinstance(input_size, (str, bytes)) or not isinstance(input_size, Sequence) or len(input_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 4 for v in input_size)):
        raise InputError(f"input_size must be (H, W), two ints >= 4 (e.g. (256, 192)), got {input_size!r}")
    return int(input_size[0]), int(input_size[1])


def pose_settings(model: nn.Module, input_size: Optional[SizeLike] = None, method: Optional[str] = None
                  ) -> Tuple[Dict[str, Any], Tuple[int, int], str]:
    """(preprocessing, network input (H, W), heatmap decoding) of a pose model for :func:`predict`'s
    ``input_size`` / ``method`` arguments (None: the model's): :func:`resolve_data_config`, then the
    cfg's ``decode_method``, else the head's."""
    cfg = resolve_data_config(model)
    size = _input_size(input_size, cfg)
    method = (method or cfg_value(getattr(model, "pretrained_cfg", None), "decode_method")
              or getattr(getattr(model, "head", None), "decode_method", None) or "msra")
    if method not in DECODE_METHODS:
        raise InputError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    return cfg, size, method


def _is_box_set(item: Any) -> bool:
    """Whether one image's entry is a set of boxes (a 2-D tensor / array, a list of boxes, an empty
    list) rather than one flat box of numbers."""
    if isinstance(item, Tensor) or type(item).__name__ == "ndarray":
        return item.ndim == 2 or item.ndim == 1 and item.shape[0] == 0
    if isinstance(item, (list, tuple)):
        return not any(isinstance(v, numbers.Number) or getattr(v, "ndim", None) == 0 for v in item)
    return False


def _box_sets(boxes: Any, n_images: int, batched: bool) -> List[Any]:
    """``boxes`` -> one box set per image (None: the whole image).

    A batch needs a list of per-image sets, each (N, 4) / (N, 5) (or None), or a (B, N, 4|5)
    tensor / array: a flat list of boxes is refused, as the same boxes as one (N, 5) tensor are,
    rather than silently giving image i the i-th box."""
    if not batched:
        return [boxes]
    if boxes is None:
        return [None] * n_images
    stacked = isinstance(boxes, Tensor) or type(boxes).__name__ == "ndarray"
    advice = (f"give one (N, 4) / (N, 5) box set per image: a list of {n_images} lists of boxes (e.g. "
              "[[box_a], [box_b, box_c]]), a (B, N, 4|5) tensor, or None for whole images")
    if stacked and boxes.ndim == 3:
        sets = list(boxes)
    elif isinstance(boxes, (list, tuple)):
        sets = list(boxes)
        flat = [i for i, item in enumerate(sets) if item is not None and not _is_box_set(item)]
        if flat:
            raise InputError(f"boxes for {n_images} images: entry {flat[0]} is one flat box, not a set of boxes; "
                             + advice)
    else:
        given = f", got one {tuple(boxes.shape)} set" if stacked else ""
        raise InputError(f"{n_images} images need one box set each{given}; {advice}")
    if len(sets) != n_images:
        raise InputError(f"{len(sets)} box sets for {n_images} images: " + advice)
    return sets


def _predict_one(
    model: nn.Module,
    image: Tensor,
    boxes: Any,
    bbox_format: str,
    cfg: Mapping,
    size: Tuple[int, int],
    method: str,
    flip: bool,
    flip_indices: Optional[Sequence[int]],
    batch_size: int,
    blur_kernel_size: int,
    info: Optional[KeypointInfo],
    max_memory_gb: Optional[float],
) -> PoseResult:
    out_device = image.device
    h, w = image.shape[-2:]
    if boxes is None:  # mmpose inference_topdown: the whole image as one box
        xyxy, box_scores = torch.tensor([[0.0, 0.0, w, h]], dtype=torch.float64), None
    else:
        xyxy, box_scores = parse_boxes(boxes, (h, w), bbox_format)
    in_h, in_w = size
    udp = method == "udp"
    if xyxy.shape[0]:
        n = min(batch_size, xyxy.shape[0])
        # The crops, their float64 sampling grids and the network's activations of one batch.
        crop_bytes = n * in_h * in_w * (4 * image.shape[0] + 56)
        check_memory(activation_bytes(model, in_h, in_w, n) + crop_bytes,
                     f"the forward pass of {n} crop(s) of {in_h}x{in_w}",
                     "use a smaller input_size or batch_size", max_memory_gb)
    device, dtype = model_device_dtype(model)
    image = image.to(device)
    center, scale = box_to_center_scale(xyxy.to(device), aspect_ratio=in_w / in_h)
    all_keypoints, all_scores = [], []
    for start in range(0, xyxy.shape[0], batch_size):
        part = slice(start, start + batch_size)
        crops = normalize(crop(image, center[part], scale[part], (in_h, in_w), udp=udp), cfg).to(dtype)
        heatmaps = _model_output(model, crops).float()
        if flip:
            indices = (check_flip_indices(flip_indices, heatmaps.shape[1]) if flip_indices is not None
                       else _flip_indices_for(model, heatmaps.shape[1]))
            flipped = flip_heatmaps(_model_output(model, crops.flip(-1)).float(), indices, shift=not udp)
            heatmaps = (heatmaps + flipped) * 0.5
        keypoints, scores = decode_heatmaps(heatmaps, (in_h, in_w), method, blur_kernel_size)
        all_keypoints.append(keypoints)
        all_scores.append(scores)
    if all_keypoints:
        keypoints = torch.cat(all_keypoints).double()
        # TopdownPoseEstimator.add_pred_to_datasample: input pixels -> image pixels.
        input_wh = torch.tensor([in_w, in_h], dtype=torch.float64, device=device)
        keypoints = keypoints / input_wh * scale.unsqueeze(1) + center.unsqueeze(1) - 0.5 * scale.unsqueeze(1)
        scores = torch.cat(all_scores)
    else:
        k = getattr(model, "num_keypoints", 0) or (info.num_keypoints if info is not None else 0)
        keypoints, scores = torch.zeros(0, k, 2), torch.zeros(0, k)
    areas = (scale[:, 0] * scale[:, 1]).float().to(out_device)
    return PoseResult(
        keypoints=keypoints.float().to(out_device), scores=scores.float().to(out_device),
        boxes=xyxy.float().to(out_device), box_scores=box_scores.to(out_device) if box_scores is not None else None,
        keypoint_names=info.names if info is not None else None,
        skeleton=info.skeleton if info is not None else (), image_size=(int(h), int(w)), areas=areas,
    )


@torch.inference_mode()
def predict(
    model: nn.Module,
    image: Any,
    boxes: Any = None,
    *,
    bbox_format: str = "xyxy",
    flip: bool = True,
    channel_order: str = "RGB",
    input_size: Optional[SizeLike] = None,
    method: Optional[str] = None,
    batch_size: int = 32,
    flip_indices: Optional[Sequence[int]] = None,
    blur_kernel_size: int = 11,
    max_memory_gb: Optional[float] = None,
) -> Union[PoseResult, List[PoseResult]]:
    """Top-down pose of every person box: a :class:`PoseResult` (a list of them for a batch).

    Args:
        model: a pose model in eval mode (``model.eval()``; refused otherwise, never switched).
        image: one image or a batch, as :mod:`hrformer.image` takes them (a path, PIL image, numpy
            HWC array, torch (3, H, W) / (B, 3, H, W) tensor, or a list; uint8 or float in [0, 1]).
            An ``in_chans=1`` model takes gray images (RGB ones are converted as Pillow's
            ``convert("L")``, normalised with the mean of the cfg's RGB ``mean`` / ``std``); other
            channel counts take tensors / arrays with that many channels.
        boxes: the person boxes of the image, (N, 4) or (N, 5) (fifth column: detector scores), as
            a tensor, numpy array or list; ``None``: the whole image as one box (as mmpose's
            ``inference_topdown``). For a batch, one box set (or None) per image: a list of lists
            of boxes or a (B, N, 4|5) tensor (a flat list of boxes is refused, never paired).
        bbox_format: ``"xyxy"`` (x1, y1, x2, y2) or ``"xywh"`` (COCO x, y, w, h).
        flip: the flip test: average the heatmaps with those of the mirrored crop (flip indices and,
            except for udp, the one-pixel shift of mmpose's configs).
        channel_order: "RGB" or "BGR" (OpenCV) for arrays and tensors.
        input_size: the network input (H, W); default :func:`~hrformer.data_config.resolve_data_config`'s
            (the model's ``pretrained_cfg``, else its head's: 256x192).
        method: heatmap decoding, ``"msra"``, ``"dark"`` or ``"udp"``; default the cfg's
            ``decode_method``, else the head's (``"msra"``).
        batch_size: crops per forward pass.
        flip_indices: the left/right swap of the keypoints (a permutation of 0..K-1); default the
            model's keypoint metadata.
        max_memory_gb: the memory budget of one batch's forward pass (:mod:`hrformer.limits`;
            default ``$HRFORMER_MAX_MEMORY_GB`` or 8).

    Per box, as mmpose's ``TopdownPoseEstimator``: centre / scale with padding 1.25 fixed to the
    input aspect ratio, the affine crop (UDP warp for ``method="udp"``; bilinear on the float image,
    so it differs from OpenCV's uint8 warp by its rounding, under half a grey level), the model's
    preprocessing (``channel_order``, ``mean`` / ``std``), the network under
    ``torch.inference_mode``, :func:`~hrformer.pose.decode_heatmaps` and the map back to the image.
    """
    check_model(model, "pose")
    cfg, size, method = pose_settings(model, input_size, method)
    batch_size = _positive_int(batch_size, "batch_size")
    if not isinstance(flip, bool):
        raise InputTypeError(f"flip must be True or False, got {flip!r}")
    if flip_indices is not None:
        flip_indices = check_flip_indices(flip_indices)
    images, batched = load_images(image, channel_order=channel_order, in_chans=cfg["input_size"][0])
    info = keypoint_info(model)
    sets = _box_sets(boxes, len(images), batched)
    results = [
        _predict_one(model, img, box_set, bbox_format, cfg, size, method, flip, flip_indices, batch_size,
                     blur_kernel_size, info, max_memory_gb)
        for img, box_set in zip(images, sets)
    ]
    return results if batched else results[0]

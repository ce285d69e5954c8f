"""Top-down pose inference without mmpose: box -> crop -> network -> heatmaps -> keypoints.

A torch restatement of the mmpose 1.x top-down pipeline, batched over boxes and keypoints:

* :mod:`.geometry`: :func:`parse_boxes`, :func:`box_to_center_scale` (``GetBBoxCenterScale`` +
  ``TopdownAffine``'s aspect-ratio fix), :func:`warp_matrix` and :func:`crop` (``get_warp_matrix`` /
  ``get_udp_warp_matrix`` and ``cv2.warpAffine`` via ``grid_sample``);
* :mod:`.codec`: :func:`flip_heatmaps` (the flip test) and :func:`decode_heatmaps` (``MSRAHeatmap``,
  DARK and ``UDPHeatmap`` decoding, their quirks included);
* :mod:`.pipeline`: :func:`predict`, images and boxes in, :class:`PoseResult` out.

Conventions: sizes are torch's ``(H, W)``; points, centres and scales are ``(x, y)`` / ``(w, h)`` in
pixel-index coordinates (pixel ``i`` is centred on ``i``), as in OpenCV and mmpose.
"""

from .codec import (
    DECODE_METHODS,
    check_flip_indices,
    decode_heatmaps,
    flip_heatmaps,
    heatmap_maximum,
    modulate_heatmaps,
    opencv_gaussian_kernel,
)
from .geometry import BBOX_FORMATS, box_to_center_scale, crop, parse_boxes, warp_matrix
from .pipeline import IMAGENET_MEAN, IMAGENET_STD, PoseResult, keypoint_info, predict

__all__ = [
    "BBOX_FORMATS", "DECODE_METHODS", "IMAGENET_MEAN", "IMAGENET_STD", "PoseResult", "box_to_center_scale",
    "check_flip_indices", "crop", "decode_heatmaps", "flip_heatmaps", "heatmap_maximum", "keypoint_info",
    "modulate_heatmaps", "opencv_gaussian_kernel", "parse_boxes", "predict", "warp_matrix",
]

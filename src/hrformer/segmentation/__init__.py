"""Semantic segmentation inference with the OCR models, as the official tester runs them, plus
sliding windows for large images.

* :func:`predict` (:mod:`.predict`): image(s) -> :class:`SegmentationResult` (logits, labels,
  class names); single / multi-scale, flip, whole image or sliding windows.
* :func:`preprocess` (:mod:`.preprocess`): RGB [0, 1] -> the network's normalised input.
* :func:`slide_logits`, :func:`windows` (:mod:`.sliding`): mmseg's ``slide`` mode.
* :func:`colorize`, :func:`overlay` (:mod:`.colors`): label maps as pictures.
"""

from .colors import colorize, overlay
from .predict import predict
from .preprocess import preprocess
from .results import SegmentationResult
from .sliding import slide_logits, window_count, window_starts, windows

__all__ = ["SegmentationResult", "colorize", "overlay", "predict", "preprocess", "slide_logits", "window_count",
           "window_starts", "windows"]

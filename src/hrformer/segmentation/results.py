"""What :func:`hrformer.segmentation.predict` returns for one image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from torch import Tensor

from ..datasets import palette_for
from ..image import ImageLike, load_image, to_pil
from .colors import Color, colorize, overlay

if TYPE_CHECKING:  # Pillow is optional: imported where used
    from PIL import Image as PILImage

__all__ = ["SegmentationResult"]


@dataclass(frozen=True)
class SegmentationResult:
    """Segmentation of one image.

    Attributes:
        logits: (K, H, W) float32 class scores at the image's resolution (summed over scales and
            flips, as the official multi-scale test).
        labels: (H, W) int64, ``logits.argmax(0)``.
        class_names: the K class names when the model's ``pretrained_cfg`` has them, else ``None``.
        dataset: the dataset the weights were trained on (``pretrained_cfg["dataset"]``), or ``None``.

    It unpacks as ``logits, labels = result`` (what ``predict`` returned before it had results).
    """

    logits: Tensor
    labels: Tensor
    class_names: Optional[Tuple[str, ...]] = None
    dataset: Optional[str] = None

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.logits, self.labels))

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[0])

    @property
    def palette(self) -> Tuple[Color, ...]:
        """The dataset's colours (cityscapes...) or a generated palette, one RGB triple per class."""
        return palette_for(self.num_classes, self.dataset or "")

    def colorize(self, palette: Optional[Sequence[Color]] = None) -> Tensor:
        """(3, H, W) uint8 RGB picture of the label map (``palette`` default: :attr:`palette`)."""
        return colorize(self.labels, self.palette if palette is None else palette)

    def overlay_tensor(self, image: ImageLike, alpha: float = 0.5, palette: Optional[Sequence[Color]] = None,
                       channel_order: str = "RGB") -> Tensor:
        """The colour label map blended over ``image`` (the segmented one: a path, PIL image, array or
        tensor, as :func:`predict` takes it): a (3, H, W) uint8 RGB tensor (``alpha``: colour opacity)."""
        rgb = load_image(image, channel_order=channel_order).to(self.labels.device)
        return overlay(rgb, self.labels, self.palette if palette is None else palette, alpha=alpha)

    def overlay(self, image: ImageLike, alpha: float = 0.5, palette: Optional[Sequence[Color]] = None,
                channel_order: str = "RGB") -> "PILImage.Image":
        """:meth:`overlay_tensor` as an RGB ``PIL.Image`` (as :func:`hrformer.draw.draw_pose` returns),
        ready to ``.save("overlay.png")``; needs Pillow."""
        return to_pil(self.overlay_tensor(image, alpha, palette, channel_order).cpu())

    def class_areas(self) -> dict:
        """``{class name (or index): fraction of the pixels}`` for the classes present, largest first."""
        return {(row["name"] if row["name"] is not None else row["index"]): row["fraction"]
                for row in self._class_rows()}

    def _class_rows(self) -> List[Dict[str, Any]]:
        counts = self.labels.flatten().bincount(minlength=self.num_classes).tolist()
        total = max(self.labels.numel(), 1)
        names = self.class_names
        rows = [{"index": i, "name": names[i] if names and i < len(names) else None, "pixels": c,
                 "fraction": c / total} for i, c in enumerate(counts) if c]
        return sorted(rows, key=lambda row: -row["pixels"])

    def to_dict(self, labels: bool = False) -> Dict[str, Any]:
        """JSON-ready (plain lists and numbers): ``image_size`` [H, W], ``num_classes``, ``dataset``,
        ``class_names`` (or None) and ``classes``, the classes present, largest first, each with its
        ``index``, ``name`` (None without names), ``pixels`` and ``fraction``. The (H, W) label map
        itself (nested lists of class indices) only with ``labels=True``: it is H * W numbers."""
        out: Dict[str, Any] = {
            "image_size": [int(v) for v in self.labels.shape],
            "num_classes": self.num_classes,
            "dataset": self.dataset,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "classes": self._class_rows(),
        }
        if labels:
            out["labels"] = self.labels.cpu().tolist()
        return out

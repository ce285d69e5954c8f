"""Class names and colour palettes of the semantic segmentation datasets the paper's models were
trained on (label index -> name / RGB colour), in the label order of the official training code
(HRNet/HRFormer ``seg``: Cityscapes train ids, and the other datasets with ``reduce_zero_label``,
i.e. without their "unlabelled/background" index 0).

Palettes: Cityscapes uses the dataset's own colours; the others a generated PASCAL-VOC style
palette (bit-interleaved label index), as the official code does for COCO-Stuff (its ADE20K and
PASCAL-Context colours come from ``.mat`` files that are not reproduced here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

Color = Tuple[int, int, int]

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE: Tuple[Color, ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

PASCAL_CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)

COCO_STUFF_CLASSES = (
    # 80 things
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
    # 91 stuff
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower",
    "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper", "pavement",
    "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river", "road", "rock",
    "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile", "wall-wood", "water-other",
    "waterdrops", "window-blind", "window-other", "wood",
)

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


def voc_palette(n: int, offset: int = 0) -> Tuple[Color, ...]:
    """``n`` colours of the PASCAL VOC construction: the bits of label ``i + offset`` spread over the
    high bits of R, G and B."""
    colors: List[Color] = []
    for label in range(offset, offset + n):
        rgb = [0, 0, 0]
        bit, lab = 7, label
        while lab:
            for c in range(3):
                rgb[c] |= ((lab >> c) & 1) << bit
            lab >>= 3
            bit -= 1
        colors.append((rgb[0], rgb[1], rgb[2]))
    return tuple(colors)


@dataclass(frozen=True)
class SegDataset:
    """A dataset's name, class names and colours (index = the network's output channel)."""

    name: str
    classes: Tuple[str, ...]
    palette: Tuple[Color, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DATASETS: Dict[str, SegDataset] = {
    d.name: d for d in (
        SegDataset("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE),
        SegDataset("pascal_context", PASCAL_CONTEXT_CLASSES, voc_palette(59, offset=1)),
        SegDataset("coco_stuff", COCO_STUFF_CLASSES, voc_palette(171)),
        SegDataset("ade20k", ADE20K_CLASSES, voc_palette(150, offset=1)),
    )
}


def palette_for(num_classes: int, dataset: str = "") -> Tuple[Color, ...]:
    """The dataset's palette when it has ``num_classes`` classes, else a generated one."""
    d = DATASETS.get(dataset)
    return d.palette if d is not None and d.num_classes == num_classes else voc_palette(num_classes, offset=1)


__all__ = ["ADE20K_CLASSES", "CITYSCAPES_CLASSES", "CITYSCAPES_PALETTE", "COCO_STUFF_CLASSES", "DATASETS",
           "PASCAL_CONTEXT_CLASSES", "SegDataset", "palette_for", "voc_palette"]

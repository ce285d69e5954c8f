"""The pretrained-weight registry: one :class:`PretrainedCfg` per ``arch.tag`` name, in the timm manner.

Tags name the training data (and input size); a suffix names the source when two releases share
them. The first tag registered for an architecture is its default (``hrformer_s`` ->
``hrformer_s.in1k``).

Where ``pretrained=True`` finds the weights when no local file is given, in order (see
:func:`hrformer.weights.fetch_pretrained`):

1. ``hf_hub_id``: our converted ``model.safetensors`` on the Hugging Face Hub. **Not published yet**:
   the ``hrformer/...`` repositories are the planned locations (``scripts/publish_weights.py``).
2. ``url``: the original release, downloaded, sha256-checked and converted on the fly. Works today
   for the mmpose files. The official checkpoints were shared as OneDrive links (``origin_url``),
   not direct downloads: fetch them by hand and pass the file as ``pretrained="path"``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..data_config import IMAGENET_MEAN, IMAGENET_STD
from ..datasets import DATASETS
from ..errors import ConfigError, InputError
from ..heads import HEADS
from ..keypoints import COCO_KEYPOINTS, KeypointInfo
from .layouts import LAYOUT_SEMANTICS

HF_HUB_ORG = "hrformer"


@dataclass(frozen=True)
class PretrainedCfg(Mapping):
    """Where a set of weights lives and what it needs; also a read-only mapping, as timm's
    ``pretrained_cfg`` (``cfg["mean"]``, ``cfg.get("crop_pct")``, ``dict(cfg)``), with the derived
    keys ``num_classes``, ``first_conv`` and ``classifier`` besides the fields.

    ``model_kwargs`` are the :func:`hrformer.create_model` arguments the weights were trained with
    (head and its size, relative position bias, fusion upsampling, single/multi-scale last stage).
    ``layout`` is the key layout of the original file (see :data:`hrformer.weights.LAYOUTS`);
    ``None`` means unknown, i.e. the entry is unverified. ``metrics`` are the numbers the original
    release reports, in percent (``imagenet_top1``, ``coco_val2017_ap``).

    Preprocessing: ``input_size`` (C, H, W), ``mean``/``std`` of [0, 1] inputs in ``channel_order``,
    ``interpolation``, ``crop_pct`` and ``crop_mode`` (classification: resize the shorter side to
    ``H / crop_pct``, centre crop).
    Pose tags add ``keypoint_info`` (names, skeleton, flip indices, OKS sigmas) and the heatmap
    ``decode_method`` they were evaluated with.

    Segmentation tags add ``dataset`` and its ``class_names`` (output channel order), ``input_size``
    = the training crop, ``test_size`` (H, W) the evaluation input (``None``: each image at its
    own size) and ``test_scales``, the scales of the multi-scale evaluation (each with a
    horizontal flip; logits summed, see :func:`hrformer.segmentation.predict`); ``metrics`` hold
    the single-scale (``*_miou``) and multi-scale (``*_miou_ms``) mIoU.
    """

    architecture: str
    tag: str
    model_kwargs: Dict[str, Any]
    hf_hub_id: Optional[str] = None
    hf_hub_filename: str = "model.safetensors"
    url: Optional[str] = None
    layout: Optional[str] = None
    origin_url: Optional[str] = None
    input_size: Tuple[int, int, int] = (3, 224, 224)
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    license: str = "mit"
    metrics: Dict[str, float] = field(default_factory=dict)
    notes: str = ""
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    crop_mode: str = "center"
    channel_order: str = "RGB"
    keypoint_info: Optional[KeypointInfo] = None
    decode_method: Optional[str] = None
    dataset: Optional[str] = None
    class_names: Optional[Tuple[str, ...]] = None
    test_size: Optional[Tuple[int, int]] = None
    test_scales: Tuple[float, ...] = (1.0,)

    # ------------------------------------------------------------------ mapping view
    def _outputs(self, arg: str) -> int:
        head = HEADS.get(self.model_kwargs.get("head") or "")
        if head is None or head.output_arg != arg:
            return 0
        return int(self.model_kwargs.get(arg, head.default_outputs))

    @property
    def num_classes(self) -> int:
        """Classes of a classification / segmentation head; 0 for other heads or none (as the model's
        ``num_classes``)."""
        return self._outputs("num_classes")

    @property
    def num_keypoints(self) -> int:
        """Heatmaps of a pose head; 0 otherwise (as the model's ``num_keypoints``)."""
        return self._outputs("num_keypoints")

    @property
    def first_conv(self) -> str:
        return "stem.conv1.conv"

    @property
    def classifier(self) -> Optional[str]:
        head = self.model_kwargs.get("head")
        return f"head.{HEADS[head].classifier_name}" if head in HEADS else None

    def _view(self) -> Dict[str, Any]:
        view = {f.name: getattr(self, f.name) for f in fields(self)}
        view.update(num_classes=self.num_classes, num_keypoints=self.num_keypoints, first_conv=self.first_conv, classifier=self.classifier)
        return view

    def __getitem__(self, key: str) -> Any:
        return self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    @property
    def name(self) -> str:
        return f"{self.architecture}.{self.tag}"

    @property
    def verified(self) -> bool:
        """Whether the original file's key layout is known (False: registered, conversion unchecked)."""
        return self.layout is not None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "pretrained_cfg") -> "PretrainedCfg":
        """Inverse of :meth:`to_dict` (unknown keys ignored); a malformed entry is a
        :class:`~hrformer.errors.ConfigError` naming ``source`` and the key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        try:
            for key in ("input_size", "mean", "std", "class_names", "test_size", "test_scales"):
                if d.get(key) is not None:
                    d[key] = tuple(d[key])
            if d.get("keypoint_info") is not None:
                d["keypoint_info"] = KeypointInfo.from_dict(d["keypoint_info"])
            if not isinstance(d.get("model_kwargs"), Mapping):
                raise ConfigError("'model_kwargs' must be a mapping")
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise ConfigError(f"{source}: malformed entry ({type(e).__name__}: {e})") from e


_PRETRAINED: Dict[str, PretrainedCfg] = {}


def register_pretrained(cfg: PretrainedCfg) -> PretrainedCfg:
    """Add (or replace) the weights ``cfg.name``."""
    _PRETRAINED[cfg.name] = cfg
    return cfg


def list_pretrained(pattern: Union[str, Sequence[str]] = "") -> List[str]:
    """``arch.tag`` names matching a wildcard ``pattern`` (or any of several), sorted."""
    patterns = [p for p in ([pattern] if isinstance(pattern, str) else pattern) if p]
    names = sorted(_PRETRAINED)
    return [n for n in names if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def pretrained_tags(architecture: str) -> List[str]:
    """The tags of one architecture, the default first."""
    return [cfg.tag for cfg in _PRETRAINED.values() if cfg.architecture == architecture]


def get_pretrained_cfg(architecture: str, tag: str = "") -> PretrainedCfg:
    """The weights ``architecture.tag`` (also given as one name, ``"hrformer_s.in1k"``, as timm's
    ``get_pretrained_cfg``); an empty tag picks the default."""
    if "." in architecture:
        architecture, _, named = architecture.partition(".")
        if tag and named != tag:
            raise InputError(f"two tags given: {architecture}.{named} and tag={tag!r}")
        tag = named
    tags = pretrained_tags(architecture)
    if not tags:
        raise InputError(f"no pretrained weights are registered for {architecture!r}; "
                         f"models with weights: {', '.join(sorted({c.architecture for c in _PRETRAINED.values()}))}")
    tag = tag or tags[0]
    if tag not in tags:
        raise InputError(f"unknown pretrained tag {architecture}.{tag}; available: "
                         + ", ".join(f"{architecture}.{t}" for t in tags))
    return _PRETRAINED[f"{architecture}.{tag}"]


# --------------------------------------------------------------------------- the released weights
_OFFICIAL_CLS = dict(head="classification", num_classes=1000, **LAYOUT_SEMANTICS["official_cls"].model_kwargs(),
                     multiscale_output=True)
_OFFICIAL_POSE = dict(head="pose", num_keypoints=17, **LAYOUT_SEMANTICS["official_pose"].model_kwargs(),
                      multiscale_output=False)
_MMPOSE_POSE = dict(head="pose", num_keypoints=17, **LAYOUT_SEMANTICS["mmpose"].model_kwargs(),
                    multiscale_output=False)
_MMPOSE_BACKBONE = dict(head=None, **LAYOUT_SEMANTICS["mmpose"].model_kwargs(), multiscale_output=True)

_MMPOSE_COCO = "https://download.openmmlab.com/mmpose/top_down/hrformer/"
_MMPOSE_PRETRAIN = "https://download.openmmlab.com/mmpose/pretrain_models/"
_SIZE_NAMES = {"hrformer_t": "tiny", "hrformer_s": "small", "hrformer_b": "base"}


def _official_cls(arch: str, top1: float, origin_url: str) -> PretrainedCfg:
    return PretrainedCfg(
        arch, "in1k", dict(_OFFICIAL_CLS), hf_hub_id=f"{HF_HUB_ORG}/{arch}.in1k", layout="official_cls",
        origin_url=origin_url, metrics={"imagenet_top1": top1}, crop_pct=0.875, interpolation="bicubic",
        notes=f"official ImageNet-1k classifier (HRNet/HRFormer cls/configs/hrt/hrt_{_SIZE_NAMES[arch]}.yaml)",
    )


def _mmpose_coco(arch: str, size: Tuple[int, int], file: str, ap: float) -> PretrainedCfg:
    tag = f"coco_{size[0]}x{size[1]}"
    return PretrainedCfg(
        arch, tag, dict(_MMPOSE_POSE), hf_hub_id=f"{HF_HUB_ORG}/{arch}.{tag}",
        url=_MMPOSE_COCO + file, layout="mmpose", input_size=(3, *size), license="apache-2.0",
        keypoint_info=COCO_KEYPOINTS, decode_method="msra",
        metrics={"coco_val2017_ap": ap},
        notes="mmpose 0.x top-down heatmap model (state_dict with backbone.* and keypoint_head.final_layer.*)",
    )


def _official_coco(arch: str, size: Tuple[int, int], ap: float, origin_url: str) -> PretrainedCfg:
    tag = f"coco_{size[0]}x{size[1]}_official"
    return PretrainedCfg(
        arch, tag, dict(_OFFICIAL_POSE), hf_hub_id=f"{HF_HUB_ORG}/{arch}.{tag}", layout="official_pose",
        origin_url=origin_url, input_size=(3, *size), metrics={"coco_val2017_ap": ap},
        keypoint_info=COCO_KEYPOINTS, decode_method="msra",
        notes=f"official top-down pose model (HRNet/HRFormer pose/configs/top_down/hrt/coco/"
              f"hrt_{_SIZE_NAMES[arch]}_coco_{size[0]}x{size[1]}.py)",
    )


def _mmpose_backbone(arch: str, file: str) -> PretrainedCfg:
    return PretrainedCfg(
        arch, "in1k_mmpose", dict(_MMPOSE_BACKBONE), hf_hub_id=f"{HF_HUB_ORG}/{arch}.in1k_mmpose",
        url=_MMPOSE_PRETRAIN + file, layout=None, license="apache-2.0",
        notes="ImageNet backbone mmpose initialises its pose models from; key layout unverified",
    )


# Metrics and OneDrive links: the HRNet/HRFormer README (ImageNet-1k val top-1, COCO val2017 AP);
# mmpose files and AP: the mmpose model zoo (../shared/reference/hrformer_reference.json).
for _cfg in (
    # default tags first
    _official_cls("hrformer_t", 78.6, "https://1drv.ms/u/s!Ai-PFrdirDvwj1UXGB63dBVVOuLO?e=ZLOY7r"),
    _official_cls("hrformer_s", 81.2, "https://1drv.ms/u/s!Ai-PFrdirDvwj1cc3tSp4kIKI_JH?e=bHW7xj"),
    _official_cls("hrformer_b", 82.8, "https://1drv.ms/u/s!Ai-PFrdirDvwj1iNZngTF7PEyik9?e=fv8CG6"),
    _mmpose_coco("hrformer_s", (256, 192), "hrformer_small_coco_256x192-5310d898_20220316.pth", 73.8),
    _mmpose_coco("hrformer_s", (384, 288), "hrformer_small_coco_384x288-98d237ed_20220316.pth", 75.7),
    _mmpose_coco("hrformer_b", (256, 192), "hrformer_base_coco_256x192-6f5f1169_20220316.pth", 75.4),
    _mmpose_coco("hrformer_b", (384, 288), "hrformer_base_coco_384x288-ecf0758d_20220316.pth", 77.4),
    _official_coco("hrformer_s", (256, 192), 74.0, "https://1drv.ms/u/s!Ai-PFrdirDvwj2PC53KZd-7v3X0H?e=hUZ0fE"),
    _official_coco("hrformer_s", (384, 288), 75.6, "https://1drv.ms/u/s!Ai-PFrdirDvwj2TxlkzWYuh9CkvU?e=H50XSl"),
    _official_coco("hrformer_b", (256, 192), 75.6, "https://1drv.ms/u/s!Ai-PFrdirDvwj2V-4bLd_7RkjTFW?e=L20Wit"),
    _official_coco("hrformer_b", (384, 288), 77.2, "https://1drv.ms/u/s!Ai-PFrdirDvwj2ZKrF6rWWzoRJUM?e=RCRb0p"),
    _mmpose_backbone("hrformer_s", "hrformer_small-09516375_20220226.pth"),
    _mmpose_backbone("hrformer_b", "hrformer_base-32815020_20220226.pth"),
):
    register_pretrained(_cfg)


# --------------------------------------------------------------------------- segmentation (OCR head)
# Official HRNet/HRFormer seg README (mIoU single / multi-scale, OneDrive checkpoint links) and
# configs (seg/configs/<dataset>/H_48_D_4.json, H_48_D_4_TEST_MS3x.json): the data loader reads BGR
# images with cv2, divides by 255 and normalises with the ImageNet statistics in that (BGR) channel
# order; crops 1024x512 (Cityscapes, tested at 2048x1024) or 520x520 (tested at each image's size);
# multi-scale test: scales 0.75, 1, 1.25, each with a horizontal flip, logits summed.
_SEG_DATA = {"cityscapes": ((512, 1024), (1024, 2048)), "pascal_context": ((520, 520), None),
             "coco_stuff": ((520, 520), None), "ade20k": ((520, 520), None)}
_SEG_SCRIPT = {"hrformer_s": "run_hrt_small_ocr_v2_ohem.sh", "hrformer_b": "run_hrt_base_ocr_v2_ohem.sh",
               "hrformer_b_w13": "run_hrt_base_ocr_v2_ohem_w13.sh", "hrformer_b_w15": "run_hrt_base_ocr_v2_ohem_w15.sh"}


def _official_seg(arch: str, dataset: str, miou: float, miou_ms: float, origin_url: str) -> PretrainedCfg:
    tag = f"{dataset}_ocr"
    data = DATASETS[dataset]
    crop, test_size = _SEG_DATA[dataset]
    return PretrainedCfg(
        arch, tag, dict(head="ocr", num_classes=data.num_classes, **LAYOUT_SEMANTICS["official_seg"].model_kwargs(),
                        multiscale_output=True),
        hf_hub_id=f"{HF_HUB_ORG}/{arch}.{tag}", layout="official_seg", origin_url=origin_url,
        input_size=(3, *crop), channel_order=LAYOUT_SEMANTICS["official_seg"].channel_order, metrics={f"{dataset}_val_miou": miou,
                                                             f"{dataset}_val_miou_ms": miou_ms},
        dataset=dataset, class_names=data.classes, test_size=test_size, test_scales=(0.75, 1.0, 1.25),
        notes=f"official OCRNet segmentation model (HRNet/HRFormer seg/scripts/{dataset}/hrt/{_SEG_SCRIPT[arch]}); "
              "input: BGR in [0, 1], normalised with the ImageNet mean/std in BGR order, as the original feeds it",
    )


for _cfg in (
    _official_seg("hrformer_s", "cityscapes", 80.0, 81.0, "https://1drv.ms/u/s!Ai-PFrdirDvwj3Wsg-_ApKUAEUft?e=BnhLal"),
    _official_seg("hrformer_b", "cityscapes", 81.4, 82.0, "https://1drv.ms/u/s!Ai-PFrdirDvwj3zEMdYLM8nZ5gXN?e=v7ehnB"),
    _official_seg("hrformer_b_w15", "cityscapes", 81.9, 82.6,
                  "https://1drv.ms/u/s!Ai-PFrdirDvwkAp3LjwI-7Csmh0K?e=K1zXrn"),
    _official_seg("hrformer_s", "pascal_context", 53.8, 54.6,
                  "https://1drv.ms/u/s!Ai-PFrdirDvwkADkevlhIuUrPC1T?e=hcDx5S"),
    _official_seg("hrformer_b", "pascal_context", 56.3, 57.1,
                  "https://1drv.ms/u/s!Ai-PFrdirDvwkAMUzRnCGmAxEehJ?e=HrCQ9c"),
    _official_seg("hrformer_b_w15", "pascal_context", 57.6, 58.5,
                  "https://1drv.ms/u/s!Ai-PFrdirDvwkAIBAkrOlPp_T1YT?e=DeHMdo"),
    _official_seg("hrformer_s", "coco_stuff", 37.9, 38.9, "https://1drv.ms/u/s!Ai-PFrdirDvwj3tbt5BhdCrsu6lK?e=up2HUI"),
    _official_seg("hrformer_b", "coco_stuff", 41.6, 42.5, "https://1drv.ms/u/s!Ai-PFrdirDvwkAFAYKZm2wL9C6KL?e=AZiXLK"),
    _official_seg("hrformer_b_w15", "coco_stuff", 42.4, 43.3,
                  "https://1drv.ms/u/s!Ai-PFrdirDvwj37Np48Gpb-Pjowu?e=iwL5UA"),
    _official_seg("hrformer_s", "ade20k", 44.0, 45.1, "https://1drv.ms/u/s!Ai-PFrdirDvwj28i74aN6_Zk4clX?e=CWGOcd"),
    _official_seg("hrformer_b", "ade20k", 46.3, 47.6, "https://1drv.ms/u/s!Ai-PFrdirDvwj3epNJ-QFF33tZtr?e=df3fQk"),
    _official_seg("hrformer_b_w13", "ade20k", 48.7, 50.0, "https://1drv.ms/u/s!Ai-PFrdirDvwj3oTs_gVPzFDjdyU?e=yjGRKz"),
):
    register_pretrained(_cfg)

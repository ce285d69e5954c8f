"""The preprocessing of a model, resolved in one place (timm's ``timm/data/config.py``).

:func:`resolve_data_config` is what every ``predict``, :func:`hrformer.create_transform` and the
command line normalise images with. For each key the first of these that has it wins:

1. ``args`` (a mapping of overrides, as timm's, e.g. ``{"input_size": (3, 384, 288)}``);
2. the model's ``pretrained_cfg`` (or the ``pretrained_cfg`` given): the preprocessing its
   weights were trained with;
3. the model's head (``model.head.default_input_size``, ``model.head.crop_pct``; see
   :class:`hrformer.heads.Head`) and ``model.in_chans``;
4. ImageNet's: 224x224, :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD` of [0, 1] RGB pixels,
   bilinear, no crop.

This is a leaf module: it reads models by duck typing (``pretrained_cfg``, ``head``, ``in_chans``)
and imports nothing of hrformer but its errors, so the factory, the weight registry and the
inference code can all import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from torch import nn

from .errors import InputError, InputTypeError

# The ImageNet statistics of [0, 1] RGB pixels: every released HRFormer model normalises with them.
IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
CHANNEL_ORDERS = ("RGB", "BGR")

# What a model that says nothing gets (no pretrained_cfg, no head): ImageNet classification at 224.
DEFAULT_INPUT_SIZE: Tuple[int, int] = (224, 224)
DEFAULT_INTERPOLATION = "bilinear"
DEFAULT_CROP_PCT = 1.0
DEFAULT_CROP_MODE = "center"

# The keys resolve_data_config returns: timm's six, and the channel order our predicts feed.
DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode", "channel_order")

__all__ = [
    "CHANNEL_ORDERS", "DATA_KEYS", "DEFAULT_CROP_MODE", "DEFAULT_CROP_PCT", "DEFAULT_INPUT_SIZE",
    "DEFAULT_INTERPOLATION", "IMAGENET_MEAN", "IMAGENET_STD", "head_defaults", "resolve_data_config",
    "cfg_value", "resolve_model_data_config", "unwrap_model",
]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def cfg_value(cfg: Any, key: str) -> Any:
    """``cfg[key]`` of a mapping or ``cfg.key`` of an object; None when absent."""
    if cfg is None:
        return None
    if isinstance(cfg, Mapping):
        return cfg.get(key)
    return getattr(cfg, key, None)


def head_defaults(model: Optional[nn.Module]) -> Dict[str, Any]:
    """The preprocessing a model gets from its head when its ``pretrained_cfg`` says nothing:
    ``input_size`` (``model.in_chans``, *``head.default_input_size``), ``crop_pct`` (the head's),
    ImageNet ``mean`` / ``std``, bilinear, centre crop, RGB. A model without a head (a backbone or
    a network of your own) gets ImageNet classification's 224x224 without crop."""
    head = getattr(model, "head", None)
    size = cfg_value(head, "default_input_size") or DEFAULT_INPUT_SIZE
    crop_pct = cfg_value(head, "crop_pct") or DEFAULT_CROP_PCT
    in_chans = cfg_value(model, "in_chans") or 3
    return {
        "input_size": (int(in_chans), int(size[0]), int(size[1])), "interpolation": DEFAULT_INTERPOLATION,
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": float(crop_pct), "crop_mode": DEFAULT_CROP_MODE,
        "channel_order": "RGB",
    }


def _input_size(value: Any, where: str) -> Tuple[int, int, int]:
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise InputError(f"{where}input_size must be (C, H, W), three positive ints, got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _per_channel(values: Any, in_chans: int, name: str) -> Tuple[float, ...]:
    """``mean`` / ``std`` fitted to ``in_chans`` channels: one value is repeated; three (RGB) values
    for a 1-channel model are averaged (a gray pixel stands for equal R, G and B, and the loader
    sums the first convolution over RGB for ``in_chans=1``); for other channel counts they are
    repeated cyclically, as the loader repeats the first convolution (R, G, B, R, ...)."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"{name} must be a sequence of numbers, got {values!r}") from e
    if name == "std" and any(not v > 0 for v in out):
        raise InputError(f"std must be positive, got {values!r}")
    if len(out) == in_chans:
        return out
    if len(out) == 1:
        return out * in_chans
    if len(out) == 3 and in_chans == 1:
        return (sum(out) / 3,)
    if len(out) == 3:
        return tuple(out[c % 3] for c in range(in_chans))
    raise InputError(f"{name} has {len(out)} values for {in_chans} input channels; give 1 or {in_chans}")


def resolve_data_config(
    args: Optional[Union[Mapping[str, Any], nn.Module]] = None,
    pretrained_cfg: Optional[Any] = None,
    model: Optional[nn.Module] = None,
    use_test_size: bool = False,
    verbose: bool = False,
) -> Dict[str, Any]:
    """The preprocessing of a model: ``input_size`` (C, H, W), ``interpolation``, ``mean`` /
    ``std`` of [0, 1] pixels in ``channel_order`` ("RGB" / "BGR"), ``crop_pct``, ``crop_mode``.

    timm's signature and semantics: ``args`` (a mapping) overrides, then ``pretrained_cfg`` (default
    ``model.pretrained_cfg``), then the model's head defaults (module docstring).
    ``resolve_data_config(model)`` is timm's ``resolve_model_data_config(model)``.
    ``use_test_size`` takes a segmentation tag's ``test_size`` (H, W) as the input size.

    ``mean`` / ``std`` always have ``input_size[0]`` values: a 1-channel model whose cfg gives three
    (RGB) statistics gets their mean; other channel counts repeat them cyclically, as the weight
    loader adapts the first convolution. ``input_size[0]`` is ``model.in_chans`` when a model is given.
    """
    if isinstance(args, nn.Module):
        if model is not None:
            raise InputTypeError("resolve_data_config: give the model once (positionally or as model=)")
        model, args = args, None
    if args is not None and not isinstance(args, Mapping):
        raise InputTypeError(f"resolve_data_config: args must be a mapping (or the model), got {type(args).__name__}")
    if model is not None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"resolve_data_config: model must be a torch.nn.Module, not {type(model).__name__}")
        model = unwrap_model(model)
        if pretrained_cfg is None:
            pretrained_cfg = getattr(model, "pretrained_cfg", None)
    elif pretrained_cfg is None:
        raise InputTypeError("resolve_data_config needs a model or a pretrained_cfg")
    args = args or {}
    defaults = head_defaults(model)
    config: Dict[str, Any] = {}
    for key in DATA_KEYS:
        value = args.get(key)
        if value is None:
            value = cfg_value(pretrained_cfg, key)
        config[key] = defaults[key] if value is None else value

    where = "resolve_data_config: "
    if use_test_size and args.get("input_size") is None and cfg_value(pretrained_cfg, "test_size"):
        config["input_size"] = (config["input_size"][0], *cfg_value(pretrained_cfg, "test_size"))
    config["input_size"] = _input_size(tuple(config["input_size"]), where)
    if model is not None and args.get("input_size") is None and cfg_value(model, "in_chans"):
        # The model decides its channels: the cfg of the weights it was adapted from may say 3.
        config["input_size"] = (int(model.in_chans), *config["input_size"][1:])
    in_chans = config["input_size"][0]
    config["mean"] = _per_channel(config["mean"], in_chans, "mean")
    config["std"] = _per_channel(config["std"], in_chans, "std")
    order = config["channel_order"]
    order = order.upper() if isinstance(order, str) else order
    if order not in CHANNEL_ORDERS:
        raise InputError(f"{where}channel_order must be 'RGB' or 'BGR', got {config['channel_order']!r}")
    config["channel_order"] = order
    crop_pct = config["crop_pct"]
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise InputError(f"{where}crop_pct must be in (0, 1], got {crop_pct!r}")
    config["crop_pct"] = float(crop_pct)
    if verbose:
        print("Data processing configuration:", ", ".join(f"{k}={v}" for k, v in config.items()))
    return config


def resolve_model_data_config(
    model: nn.Module,
    args: Optional[Mapping[str, Any]] = None,
    pretrained_cfg: Optional[Any] = None,
    use_test_size: bool = False,
    verbose: bool = False,
) -> Dict[str, Any]:
    """timm's ``resolve_model_data_config``: :func:`resolve_data_config` with the model first."""
    return resolve_data_config(args or {}, pretrained_cfg=pretrained_cfg, model=model,
                               use_test_size=use_test_size, verbose=verbose)

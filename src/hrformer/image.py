"""The one image contract of the inference helpers (pose, segmentation, classification, CLI).

An image is any of:

* a path (``str`` / ``os.PathLike``): read with Pillow (``pip install 'hrformer[draw]'``), EXIF
  orientation applied, palette / RGBA / CMYK converted to RGB (alpha dropped), gray kept gray,
  16-bit gray scaled by 65535 (not clipped at 255);
* a ``PIL.Image``: converted as a file is;
* a numpy array ``(H, W, C)`` or ``(H, W)`` (gray), or a batch ``(B, H, W, C)``;
* a torch tensor ``(C, H, W)`` or a batch ``(B, C, H, W)``;
* a list or tuple of any of these (a batch of images of any sizes).

Pixel values: ``uint8`` in 0-255 (``uint16`` arrays in 0-65535) or floating point in [0, 1].
``channel_order="BGR"`` says that 3-channel arrays and tensors are BGR (what OpenCV gives); files and
PIL images know their own order. Everything comes out as float32 ``(C, H, W)`` in [0, 1], RGB
for a 3-channel model (1-channel images repeated), gray for an ``in_chans=1`` model (RGB images
converted as Pillow's ``convert("L")``: ITU-R 601-2 luma); a model with another channel count takes
arrays and tensors with exactly that many channels.
Anything else is refused with an :class:`~hrformer.errors.InputError` (a ``ValueError``; a
``TypeError`` too for wrong types) that names the fix: images in [0, 255] as floats, normalised
images, NaN / Inf, empty images, HWC tensors, CHW arrays, a channel count the model cannot take,
truncated or corrupt files; a file over Pillow's decompression-bomb limit is a
:class:`~hrformer.errors.ResourceLimitError`.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import TYPE_CHECKING, Any, List, Sequence, Tuple, Union

import torch
from torch import Tensor

from .data_config import CHANNEL_ORDERS
from .errors import InputError, InputTypeError, ResourceLimitError

if TYPE_CHECKING:  # Pillow and numpy are optional: imported where used
    from PIL import Image as PILImage

ImageLike = Union[str, "os.PathLike[str]", "PILImage.Image", Tensor, Any]
PILLOW_HINT = "pip install 'hrformer[draw]' (or pip install pillow)"
# Float pixels a rounding error past [0, 1] (resampling, colour conversions) are clamped, not refused.
_RANGE_TOLERANCE = 1e-3

__all__ = ["CHANNEL_ORDERS", "GRAY_WEIGHTS", "ImageLike", "load_image", "load_images", "rgb_to_gray", "to_pil"]


def _pil_module() -> Any:
    try:
        from PIL import Image
    except ImportError:  # Pillow is an optional extra, never a runtime dependency
        raise ImportError(f"reading image files and PIL images needs Pillow: {PILLOW_HINT}") from None
    return Image


def _is_pil(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    if not module.startswith("PIL."):
        return False
    return isinstance(obj, _pil_module().Image)


def _is_numpy(obj: Any) -> bool:
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _check_channel_order(channel_order: str) -> str:
    order = channel_order.upper() if isinstance(channel_order, str) else channel_order
    if order not in CHANNEL_ORDERS:
        raise InputError(f"channel_order must be 'RGB' or 'BGR' (OpenCV images are BGR), got {channel_order!r}")
    return order


# --------------------------------------------------------------------------- readers
def _read_file(path: Union[str, "os.PathLike[str]"], in_chans: int) -> Tensor:
    Image = _pil_module()
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"image {name!r}: no such file")
    try:
        img = Image.open(name)  # reads the header only; Pillow checks the pixel count here
    except Image.UnidentifiedImageError as e:
        raise InputError(f"image {name!r}: not an image file Pillow can read") from e
    except (PermissionError, IsADirectoryError):  # the file system's refusals stay OSErrors
        raise
    except (OSError, SyntaxError, EOFError) as e:  # a header cut short
        raise InputError(f"image {name!r}: truncated or corrupt image ({e})") from e
    except Image.DecompressionBombError as e:
        raise ResourceLimitError(f"image {name!r}: {_bomb_pixels(e)}, over Pillow's decompression-bomb limit "
                                 f"of {2 * (Image.MAX_IMAGE_PIXELS or 0):,}; downscale the image (or, for a "
                                 "file you trust, raise PIL.Image.MAX_IMAGE_PIXELS)") from e
    with img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # what Pillow's decoders raise on bad data
            raise InputError(f"image {name!r}: truncated or corrupt image ({e})") from e
        return _from_pil(img, in_chans, source=repr(name))


def _bomb_pixels(error: Exception) -> str:
    """The pixel count in Pillow's DecompressionBombError message ("Image size (N pixels) ...")."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return f"{int(found.group(1)):,} pixels" if found else str(error)


def _pil_bytes(img: "PILImage.Image", dtype: torch.dtype) -> Tensor:
    """A PIL image of mode L / RGB / I / F -> (C, H, W) tensor of ``dtype``, without numpy."""
    w, h = img.size
    data = img.tobytes()
    pixels = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.zeros(0, dtype=dtype)
    return pixels.view(h, w, -1).permute(2, 0, 1)


def _from_pil(img: "PILImage.Image", in_chans: int, source: str = "PIL image") -> Tensor:
    from PIL import ImageOps

    if in_chans not in (1, 3):
        raise InputError(f"{source}: a model with in_chans={in_chans} takes arrays or tensors with {in_chans} "
                         "channels, not image files / PIL images (RGB or gray)")
    if img.width == 0 or img.height == 0:
        raise InputError(f"{source}: empty image (size {img.width}x{img.height})")
    img = ImageOps.exif_transpose(img)  # phone photos: the pixels as the camera held them
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":  # 16-bit (or 32-bit integer) gray
        gray = _pil_bytes(img.convert("I"), torch.int32).float()
        top = gray.max().item()
        if gray.min().item() < 0 or top > 65535:
            raise InputError(f"{source}: 32-bit integer pixels outside 0-65535; convert to 8 or 16 bits")
        x = gray / 65535.0
    elif mode == "F":  # 32-bit float gray: the float contract applies
        x = _check_float(_pil_bytes(img, torch.float32), source)
    else:
        if mode == "P" and "transparency" in img.info:  # Pillow asks for RGBA first
            img = img.convert("RGBA")
        gray_modes = ("1", "L", "LA", "La")
        want = "L" if (mode in gray_modes or in_chans == 1) else "RGB"
        x = _pil_bytes(img.convert(want), torch.uint8).float() / 255.0
    return _fit_channels(x, in_chans, source)


# --------------------------------------------------------------------------- arrays and tensors
def _check_float(x: Tensor, source: str) -> Tensor:
    """Float pixels: finite and in [0, 1] (a rounding error past it clamped); float32."""
    if x.numel() == 0:
        return x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise InputError(f"{source}: {bad} NaN / Inf pixel value(s); give a finite image")
    lo, hi = float(x.min()), float(x.max())
    if hi > 1 + _RANGE_TOLERANCE:
        raise InputError(
            f"{source}: float pixels must lie in [0, 1], found values up to {hi:g}: divide by 255 "
            "(or pass uint8 pixels)"
        )
    if lo < -_RANGE_TOLERANCE:
        raise InputError(
            f"{source}: float pixels must lie in [0, 1], found values down to {lo:g}: pass the raw image, "
            "not a normalised one (predict normalises with the model's mean / std)"
        )
    x = x.float()
    return x.clamp(0, 1) if lo < 0 or hi > 1 else x


def _to_unit(x: Tensor, source: str) -> Tensor:
    """Integer or float pixels -> float32 in [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype == torch.uint16:
        return x.float() / 65535.0
    if x.is_floating_point():
        return _check_float(x, source)
    raise InputError(f"{source}: pixels of dtype {x.dtype} are ambiguous: convert to uint8 (0-255) "
                     "or to float in [0, 1]")


# ITU-R 601-2 luma, the weights of Pillow's convert("L").
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_gray(x: Tensor) -> Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) gray, as Pillow's ``convert("L")`` (ITU-R 601-2 luma),
    before its rounding to 8 bits."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(dim=-3, keepdim=True)


def _fit_channels(x: Tensor, in_chans: int, source: str) -> Tensor:
    """(C, H, W) RGB or gray -> (in_chans, H, W): gray repeated for a 3-channel model, RGB made gray
    for a 1-channel one (as Pillow's ``convert("L")``); any other count must match."""
    c = x.shape[0]
    if c == in_chans:
        return x
    if c == 1 and in_chans == 3:
        return x.expand(in_chans, -1, -1)
    if c == 3 and in_chans == 1:
        return rgb_to_gray(x)
    if c == 4 and in_chans == 3:
        hint = ": drop the alpha channel (image[..., :3] for an HWC array, image[:3] for a tensor)"
    elif in_chans not in (1, 3):
        hint = (f": give (C, H, W) tensors or (H, W, C) arrays with all {in_chans} channels (image files and "
                "RGB / gray pictures cannot fill them)")
    else:
        hint = ""
    raise InputError(f"{source}: {c} channels, the model takes {in_chans} (in_chans={in_chans}){hint}")


def _check_size(x: Tensor, source: str) -> None:
    if x.shape[-1] == 0 or x.shape[-2] == 0 or x.shape[-3] == 0:
        raise InputError(f"{source}: empty image (shape {tuple(x.shape)})")


def _from_chw(x: Tensor, order: str, in_chans: int, source: str) -> Tensor:
    """One (C, H, W) tensor of any accepted dtype -> float32 (in_chans, H, W) RGB in [0, 1]."""
    _check_size(x, source)
    x = _to_unit(x, source)
    if order == "BGR" and x.shape[0] == 3:
        x = x.flip(0)
    return _fit_channels(x, in_chans, source)


def _looks_hwc(shape: Sequence[int]) -> bool:
    return shape[-1] in (1, 3, 4) and shape[-3] not in (1, 3, 4)


def _from_tensor(x: Tensor, order: str, in_chans: int, source: str) -> List[Tensor]:
    if x.dim() == 3:
        if _looks_hwc(x.shape) and x.shape[0] != in_chans:
            raise InputError(f"{source}: shape {tuple(x.shape)} looks like (H, W, C); tensors are (C, H, W): "
                             "use image.permute(2, 0, 1)")
        return [_from_chw(x, order, in_chans, source)]
    if x.dim() == 4:
        if _looks_hwc(x.shape) and x.shape[1] != in_chans:
            raise InputError(f"{source}: shape {tuple(x.shape)} looks like (B, H, W, C); tensors are (B, C, H, W): "
                             "use images.permute(0, 3, 1, 2)")
        if x.shape[0] == 0:
            raise InputError(f"{source}: empty batch (shape {tuple(x.shape)})")
        _check_size(x[0], source)
        # Checked and converted as one tensor, then split into views.
        batch = _to_unit(x, source)
        if order == "BGR" and batch.shape[1] == 3:
            batch = batch.flip(1)
        return [_fit_channels(image, in_chans, f"{source}[{i}]") for i, image in enumerate(batch)]
    raise InputError(f"{source}: tensors must be (C, H, W) or (B, C, H, W); got shape {tuple(x.shape)}")


def _from_numpy(array: Any, order: str, in_chans: int, source: str) -> List[Tensor]:
    import numpy as np

    if array.dtype == np.bool_ or array.dtype.kind not in "uif":
        raise InputError(f"{source}: pixels of dtype {array.dtype} are not an image: give uint8 (0-255) "
                         "or float in [0, 1]")
    if array.dtype.kind == "u" and array.dtype.itemsize > 2 or array.dtype.kind == "i":
        raise InputError(f"{source}: pixels of dtype {array.dtype} are ambiguous: convert to uint8 (0-255) "
                         "or to float in [0, 1]")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim not in (3, 4):
        raise InputError(f"{source}: numpy images are (H, W, C), (H, W) or (B, H, W, C); got shape {array.shape}")
    if array.shape[-1] not in (1, 3, 4, in_chans) and array.shape[-3] in (1, 3, 4):
        raise InputError(f"{source}: shape {array.shape} looks like (C, H, W); numpy images are (H, W, C): "
                         "use array.transpose(1, 2, 0)")
    if not array.flags.writeable:  # np.asarray(PIL image) is read-only; torch wants writable memory
        array = array.copy()
    if array.dtype == np.uint16:  # 16-bit images (cv2.IMREAD_UNCHANGED); torch has few uint16 kernels
        array = array.astype(np.float32) / 65535.0
    x = torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3)  # (..., H, W, C) -> (..., C, H, W)
    if x.dim() == 3:
        return [_from_chw(x, order, in_chans, source)]
    return _from_tensor(x, order, in_chans, source)


def _load_one(item: Any, order: str, in_chans: int, source: str) -> List[Tensor]:
    if isinstance(item, (str, os.PathLike)):
        return [_read_file(item, in_chans)]
    if isinstance(item, Tensor):
        return _from_tensor(item.detach(), order, in_chans, source)
    if _is_numpy(item):
        return _from_numpy(item, order, in_chans, source)
    if _is_pil(item):
        return [_from_pil(item, in_chans, source)]
    raise InputTypeError(
        f"{source}: unsupported image type {type(item).__name__}; give a path, a PIL image, a numpy (H, W, C) "
        "array, a torch (C, H, W) / (B, C, H, W) tensor, or a list of these"
    )


def load_images(
    image: Any, *, channel_order: str = "RGB", in_chans: int = 3
) -> Tuple[List[Tensor], bool]:
    """Any accepted image or batch (module docstring) -> (list of float32 (in_chans, H, W) tensors in
    [0, 1], RGB or gray; whether the input was a batch: a list / tuple or a 4-D tensor / array).

    Tensors stay on their device; ``channel_order`` ("RGB" / "BGR") applies to 3-channel arrays and
    tensors only.
    """
    order = _check_channel_order(channel_order)
    if not isinstance(in_chans, int) or in_chans < 1:
        raise InputError(f"in_chans must be a positive int, got {in_chans!r}")
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise InputError("no images: the list is empty")
        images: List[Tensor] = []
        for i, item in enumerate(image):
            if isinstance(item, (list, tuple)):
                raise InputTypeError(f"image[{i}] is a {type(item).__name__}: give a flat list of images")
            images.extend(_load_one(item, order, in_chans, f"image[{i}]"))
        return images, True
    images = _load_one(image, order, in_chans, "image")
    batched = (isinstance(image, Tensor) and image.dim() == 4) or (_is_numpy(image) and image.ndim == 4)
    return images, batched


def load_image(image: Any, *, channel_order: str = "RGB", in_chans: int = 3) -> Tensor:
    """One image (module docstring) -> a float32 (in_chans, H, W) tensor in [0, 1], RGB or gray."""
    images, batched = load_images(image, channel_order=channel_order, in_chans=in_chans)
    if batched and len(images) != 1:
        raise InputError(f"expected one image, got a batch of {len(images)}")
    return images[0]


def to_pil(image: Any, *, channel_order: str = "RGB") -> "PILImage.Image":
    """One image (any accepted form) -> an RGB ``PIL.Image`` (8 bits, rounded), e.g. to draw on."""
    Image = _pil_module()
    x = load_image(image, channel_order=channel_order, in_chans=3)
    pixels = (x.cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    h, w = pixels.shape[:2]
    # The contiguous (H, W, 3) uint8 buffer as bytes in one copy (iterating a storage is per element).
    return Image.frombytes("RGB", (w, h), ctypes.string_at(pixels.data_ptr(), pixels.numel()))

"""The image contract (hrformer.image) and the model checks (hrformer.inference) shared by every predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hrformer
from hrformer.config import HRFORMER_T
from hrformer.image import load_image, load_images, to_pil
from hrformer.inference import check_model

PIL = pytest.importorskip("PIL.Image")

TINY = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)


def rgb_array(h: int = 6, w: int = 5) -> np.ndarray:
    return (np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) * 7 % 256).astype(np.uint8)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """The contract's expected output of an (H, W, 3) uint8 RGB array."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255


# --------------------------------------------------------------------------- accepted forms, one answer
def test_every_form_gives_the_same_float_rgb(tmp_path):
    array = rgb_array()
    expected = as_tensor(array)
    PIL.fromarray(array).save(tmp_path / "a.png")
    forms = {
        "path str": str(tmp_path / "a.png"),
        "PathLike": tmp_path / "a.png",
        "PIL": PIL.fromarray(array),
        "numpy uint8": array,
        "numpy float": array.astype(np.float64) / 255,
        "numpy BGR (cv2)": np.ascontiguousarray(array[..., ::-1]),
        "tensor uint8": torch.from_numpy(array).permute(2, 0, 1),
        "tensor float": expected.clone(),
        "tensor BGR": expected.flip(0),
    }
    for name, image in forms.items():
        order = "BGR" if "BGR" in name else "RGB"
        out = load_image(image, channel_order=order)
        assert out.dtype == torch.float32 and out.shape == (3, 6, 5), name
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0, msg=name)


def test_batches_and_lists():
    array = rgb_array()
    images, batched = load_images(array)
    assert not batched and len(images) == 1
    images, batched = load_images(torch.rand(2, 3, 4, 5))
    assert batched and len(images) == 2 and images[1].shape == (3, 4, 5)
    images, batched = load_images(np.stack([array, array]))
    assert batched and len(images) == 2
    images, batched = load_images([array, torch.rand(3, 7, 2), PIL.fromarray(array)])
    assert batched and [tuple(i.shape) for i in images] == [(3, 6, 5), (3, 7, 2), (3, 6, 5)]
    with pytest.raises(ValueError, match="one image"):
        load_image(torch.rand(2, 3, 4, 5))


def test_gray_alpha_palette_16bit_and_exif(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    PIL.fromarray(gray).save(tmp_path / "gray.png")
    out = load_image(tmp_path / "gray.png")
    assert out.shape == (3, 4, 5) and torch.equal(out[0], out[2])
    torch.testing.assert_close(out[0], torch.from_numpy(gray).float() / 255)
    assert load_image(tmp_path / "gray.png", in_chans=1).shape == (1, 4, 5)
    assert load_image(gray).shape == (3, 4, 5)  # a 2-D array is gray
    # RGB file for a 1-channel model: converted to gray (luma) by Pillow
    PIL.fromarray(rgb_array()).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "rgb.png", in_chans=1).shape == (1, 6, 5)
    # RGBA / palette files: RGB
    rgba = PIL.new("RGBA", (3, 2), (10, 20, 30, 0))
    rgba.save(tmp_path / "rgba.png")
    torch.testing.assert_close(load_image(tmp_path / "rgba.png")[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)
    rgba.convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (3, 2, 3)
    # 16-bit gray PNG: scaled by 65535, not clipped at 255
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000 + 1000)
    PIL.fromarray(deep).save(tmp_path / "deep.png")
    torch.testing.assert_close(load_image(tmp_path / "deep.png")[0], torch.from_numpy(deep.astype(np.float32)) / 65535)
    torch.testing.assert_close(load_image(deep)[0], torch.from_numpy(deep.astype(np.float32)) / 65535)  # cv2 16-bit
    # EXIF orientation 6 (camera rotated 90 degrees): the pixels come out upright
    img = PIL.fromarray(rgb_array(2, 4))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.png", exif=exif)
    out = load_image(tmp_path / "rot.png")
    assert out.shape == (3, 4, 2)
    torch.testing.assert_close(out, as_tensor(np.asarray(img.transpose(PIL.Transpose.ROTATE_270))))


def test_to_pil_round_trip():
    array = rgb_array()
    assert np.array_equal(np.asarray(to_pil(array)), array)
    assert np.array_equal(np.asarray(to_pil(as_tensor(array).flip(0), channel_order="BGR")), array)


# --------------------------------------------------------------------------- refusals: error type and fix
@pytest.mark.parametrize("image,kwargs,error,fix", [
    (torch.full((3, 4, 4), 200.0), {}, ValueError, "divide by 255"),
    (np.full((4, 4, 3), 255.0), {}, ValueError, "divide by 255"),
    (torch.full((3, 4, 4), -1.5), {}, ValueError, "not a normalised one"),
    (torch.tensor([[[0.5, float("nan")]]]).expand(3, 2, 2), {}, ValueError, "NaN"),
    (np.full((2, 2, 3), np.inf, dtype=np.float32), {}, ValueError, "NaN / Inf"),
    (torch.zeros(3, 0, 5), {}, ValueError, "empty"),
    (np.zeros((0, 4, 3), np.uint8), {}, ValueError, "empty"),
    (torch.zeros(48, 64, 3), {}, ValueError, r"permute\(2, 0, 1\)"),
    (torch.zeros(2, 48, 64, 3), {}, ValueError, r"permute\(0, 3, 1, 2\)"),
    (np.zeros((3, 48, 64), np.uint8), {}, ValueError, r"transpose\(1, 2, 0\)"),
    (np.zeros((8, 8, 4), np.uint8), {}, ValueError, "alpha"),
    (torch.zeros(2, 8, 8), {}, ValueError, "the model takes 3"),
    (torch.zeros(3, 8, 8), {"in_chans": 4}, ValueError, r"with all 4 channels"),
    (torch.zeros(3, 8, 8), {"channel_order": "BRG"}, ValueError, "'RGB' or 'BGR'"),
    (torch.zeros(3, 8, 8, dtype=torch.int64), {}, ValueError, "uint8"),
    (np.zeros((8, 8, 3), np.int32), {}, ValueError, "uint8"),
    (np.zeros((8, 8, 3), bool), {}, ValueError, "uint8"),
    (torch.zeros(8, 8), {}, ValueError, r"\(C, H, W\)"),
    ([], {}, ValueError, "empty"),
    ("/no/such/image.png", {}, FileNotFoundError, "no such file"),
    (12, {}, TypeError, "PIL image"),
    ([[torch.zeros(3, 2, 2)]], {}, TypeError, "flat list"),
])
def test_refused(image, kwargs, error, fix):
    with pytest.raises(error, match=fix):
        load_images(image, **kwargs)


def test_not_an_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(ValueError, match="not an image file"):
        load_image(tmp_path / "notes.png")


def test_a_rounding_error_past_one_is_clamped():
    out = load_image(torch.full((3, 2, 2), 1.0 + 1e-5))
    assert out.max() == 1.0


# --------------------------------------------------------------------------- model checks
@pytest.fixture(scope="module")
def pose_model():
    torch.manual_seed(0)
    return hrformer.HRFormer(TINY, head="pose").eval()


def test_check_model_refuses_training_mode_and_wrong_heads(pose_model):
    check_model(pose_model, "pose")
    with pytest.raises(ValueError, match="pose"):
        check_model(pose_model, "segmentation")
    with pytest.raises(ValueError, match="pose"):
        check_model(pose_model, "classification")
    pose_model.head.train()
    try:
        with pytest.raises(ValueError, match=r"submodule 'head'.*model\.eval\(\)"):
            check_model(pose_model, "pose")
    finally:
        pose_model.eval()
    pose_model.train()
    try:
        with pytest.raises(ValueError, match=r"model\.eval\(\)"):
            check_model(pose_model, "pose")
    finally:
        pose_model.eval()
    backbone = hrformer.HRFormer(TINY, head=None).eval()
    with pytest.raises(ValueError, match="no head"):
        check_model(backbone, "pose")
    with pytest.raises(ValueError, match="task must be"):
        check_model(pose_model, "detection")
    with pytest.raises(TypeError, match="nn.Module"):
        check_model(lambda x: x, "pose")

"""hrformer.classification: the eval transform against Pillow's (timm's pipeline), top-k results, class names."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hrformer
from hrformer import classification
from hrformer.classification import create_transform, imagenet_class_names
from hrformer.config import HRFORMER_T

CFG = {"input_size": (3, 32, 32), "crop_pct": 0.875, "interpolation": "bicubic",
       "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 998  # "crane" (134, 517) and "maillot" (638, 639) twice
    assert (names[0], names[1], names[207], names[281], names[409], names[999]) == (
        "tench", "goldfish", "golden retriever", "tabby", "analog clock", "toilet tissue")


def pil_eval_transform(img, cfg):
    """timm's eval transform as torchvision runs it on a PIL image, written out with Pillow."""
    from PIL import Image

    size = cfg["input_size"][-1]
    scale = int(size / cfg["crop_pct"])
    w, h = img.size
    new = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
    img = img.resize(new, {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[cfg["interpolation"]])
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    return (x - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("hw", [(40, 50), (61, 37)])
def test_transform_matches_pillow(interpolation, hw):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    # a smooth picture (a real photo's spectrum): resampling filters then agree to a grey level
    base = rng.integers(0, 256, (hw[0] // 4, hw[1] // 4, 3)).astype(np.uint8)
    img = pil.fromarray(base).resize((hw[1], hw[0]), pil.BILINEAR)
    cfg = {**CFG, "interpolation": interpolation}
    ours = create_transform(cfg)(img)
    reference = pil_eval_transform(img, cfg)
    assert ours.shape == reference.shape == (3, 32, 32)
    # Pillow rounds to 8 bits after resizing: within 1.5 grey levels, in normalised units
    assert (ours - reference).abs().max() < 1.5 / 255 / 0.224
    torch.testing.assert_close(create_transform(cfg)(np.array(img)), ours)  # numpy / PIL alike


def test_transform_shapes_batches_and_orders():
    transform = create_transform(CFG)
    assert "resize=36 (bicubic" in repr(transform) and "center_crop=(32, 32)" in repr(transform)
    assert transform(torch.rand(2, 3, 50, 40)).shape == (2, 3, 32, 32)
    x = torch.rand(3, 50, 40)
    bgr = create_transform({**CFG, "channel_order": "BGR", "mean": CFG["mean"][::-1], "std": CFG["std"][::-1]})
    torch.testing.assert_close(bgr(x), transform(x).flip(0))
    # a non-square input: the smallest keep-ratio resize covering (floor(h / pct), floor(w / pct)), then the crop
    wide = create_transform({**CFG, "input_size": (3, 32, 48)})
    assert wide(torch.rand(3, 30, 30)).shape == (3, 32, 48)
    with pytest.raises(ValueError, match="divide by 255"):
        transform(torch.full((3, 8, 8), 255.0))
    with pytest.raises(ValueError, match="crop_pct"):
        create_transform({**CFG, "crop_pct": 0})
    with pytest.raises(ValueError, match="interpolation"):
        create_transform({**CFG, "interpolation": "lanczos"})


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    model = hrformer.HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="classification").eval()
    model.pretrained_cfg = CFG
    return model


def test_predict_top_k_with_names(tiny_classifier):
    image = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    result = classification.predict(tiny_classifier, image, topk=3)
    with torch.inference_mode():
        probabilities = tiny_classifier(create_transform(tiny_classifier)(image).unsqueeze(0)).softmax(-1)[0]
    expected, indices = probabilities.topk(3)
    assert torch.equal(result.indices, indices)
    torch.testing.assert_close(result.probabilities, expected)
    assert result.names == tuple(imagenet_class_names()[i] for i in indices.tolist())
    assert json.loads(json.dumps(result.to_dict()))["classes"][0]["index"] == int(indices[0])
    batch = classification.predict(tiny_classifier, [image, (image * 255).round().to(torch.uint8)], topk=2)
    assert len(batch) == 2 and torch.equal(batch[0].indices, indices[:2])


def test_predict_refusals(tiny_classifier):
    image = torch.rand(3, 40, 50)
    with pytest.raises(ValueError, match="topk must be a positive int"):
        classification.predict(tiny_classifier, image, topk=0)
    with pytest.raises(ValueError, match="1000 classes"):
        classification.predict(tiny_classifier, image, topk=1001)
    tiny_classifier.train()
    try:
        with pytest.raises(ValueError, match=r"model\.eval\(\)"):
            classification.predict(tiny_classifier, image)
        assert tiny_classifier.training
    finally:
        tiny_classifier.eval()
    pose_model = hrformer.HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="pose").eval()
    with pytest.raises(ValueError, match="classification needs"):
        classification.predict(pose_model, image)


def test_no_names_for_other_class_counts():
    model = hrformer.HRFormer(HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1), head="classification",
                              num_classes=7).eval()
    model.pretrained_cfg = CFG
    assert classification.predict(model, torch.rand(3, 32, 32)).names is None

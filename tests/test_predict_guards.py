"""The predict functions are never silently wrong, never unbounded, and refuse with HRFormerErrors
(issue 23): every bad input here fails before the work it would have started, in tiny memory."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
import torch

import hrformer
from hrformer import classification, pose, segmentation
from hrformer.config import HRFORMER_T
from hrformer.data_config import IMAGENET_MEAN, IMAGENET_STD, resolve_data_config
from hrformer.errors import InputError, InputTypeError, ResourceLimitError
from hrformer.limits import ENV_VAR, MAX_WINDOWS, activation_bytes, memory_budget

PIL = pytest.importorskip("PIL.Image")
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1)


def tiny(head, **kwargs):
    torch.manual_seed(0)
    return hrformer.HRFormer(TINY, head=head, **kwargs).eval()


@pytest.fixture(autouse=True)
def default_budget(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


# --------------------------------------------------------------------------- never silently wrong
def test_a_model_without_classifier_is_refused():
    features = tiny("classification", num_classes=0)
    with pytest.raises(InputError, match="no classifier.*num_classes=N"):
        classification.predict(features, torch.rand(3, 32, 32))


def test_a_flat_list_of_boxes_for_a_list_of_images_is_refused():
    model = tiny("pose")
    model.pretrained_cfg = {"input_size": (3, 32, 24)}
    images = [torch.rand(3, 40, 30), torch.rand(3, 40, 30)]
    boxes = [[0, 0, 20, 30, 0.9], [5, 5, 25, 35, 0.8]]  # two boxes: for one image, or one each?
    with pytest.raises(InputError, match="one flat box.*one \\(N, 4\\) / \\(N, 5\\) box set per image"):
        pose.predict(model, images, boxes, flip=False)
    with pytest.raises(InputError, match="box set per image"):
        pose.predict(model, images, torch.tensor(boxes), flip=False)  # the same boxes as a tensor
    results = pose.predict(model, images, [boxes[:1], boxes[1:]], flip=False)  # one set each: fine
    assert [len(r) for r in results] == [1, 1]


@pytest.mark.parametrize("flip_indices, match", [([99] * 17, "permutation"), ([0] * 17, "permutation"),
                                                 (list(range(16)), "16 flip_indices for 17"),
                                                 ("0123", "sequence of ints")])
def test_flip_indices_must_be_a_permutation(flip_indices, match):
    model = tiny("pose")
    model.pretrained_cfg = {"input_size": (3, 32, 24)}
    with pytest.raises(InputError, match=match):
        pose.predict(model, torch.rand(3, 40, 30), flip_indices=flip_indices)


def test_scales_as_a_string_are_refused():
    with pytest.raises(InputTypeError, match="not the string '12'"):
        segmentation.predict(tiny("ocr", num_classes=3), torch.rand(3, 32, 32), scales="12")


def test_udp_needs_heatmaps_of_two_pixels():
    with pytest.raises(InputError, match="at least 2x2"):
        pose.decode_heatmaps(torch.rand(1, 17, 1, 1), (4, 4), "udp")
    model = tiny("pose")
    with pytest.raises(InputError, match="at least 2x2.*larger input_size"):
        pose.predict(model, torch.rand(3, 40, 30), input_size=(4, 4), method="udp", flip=False)
    result = pose.predict(model, torch.rand(3, 40, 30), input_size=(8, 8), method="udp", flip=False)
    assert torch.isfinite(result.keypoints).all()


# --------------------------------------------------------------------------- other channel counts
def gray_pair():
    rgb = PIL.new("RGB", (40, 32))
    rgb.putdata([(i * 7 % 256, i * 3 % 256, i * 11 % 256) for i in range(40 * 32)])
    return rgb, rgb.convert("L")


def test_gray_models_take_gray_and_rgb_images_in_every_predict():
    rgb, gray = gray_pair()
    gray_array = np.asarray(gray)
    readme_cfg = hrformer.get_pretrained_cfg("hrformer_t.in1k")  # the README's gray model: RGB statistics
    classifier = tiny("classification", in_chans=1)
    classifier.pretrained_cfg = readme_cfg
    assert resolve_data_config(classifier)["mean"] == (sum(IMAGENET_MEAN) / 3,)
    assert resolve_data_config(classifier)["std"] == (sum(IMAGENET_STD) / 3,)
    reference = classification.predict(classifier, gray)
    for form in (rgb, gray_array, torch.from_numpy(gray_array.copy())[None]):
        other = classification.predict(classifier, form)
        assert torch.equal(other.indices, reference.indices)
        # RGB -> gray before Pillow's rounding to 8 bits: within half a grey level
        torch.testing.assert_close(other.probabilities, reference.probabilities, atol=2e-3, rtol=0)
    segmenter = tiny("ocr", num_classes=3, in_chans=1)
    a, b = segmentation.predict(segmenter, [rgb, gray_array])
    torch.testing.assert_close(a.logits, b.logits, atol=5e-2, rtol=0)
    keypoints = tiny("pose", in_chans=1)
    keypoints.pretrained_cfg = {"input_size": (3, 32, 24)}
    assert pose.predict(keypoints, rgb, flip=False).keypoints.shape == (1, 17, 2)


def test_four_channel_models_take_four_channel_tensors_only():
    model = tiny("ocr", num_classes=3, in_chans=4)
    cfg = resolve_data_config(model)
    assert cfg["input_size"][0] == 4 and cfg["mean"] == IMAGENET_MEAN + IMAGENET_MEAN[:1]
    assert segmentation.predict(model, torch.rand(4, 32, 32)).logits.shape == (3, 32, 32)
    assert segmentation.predict(model, np.random.rand(32, 32, 4).astype(np.float32)).labels.shape == (32, 32)
    with pytest.raises(InputError, match="3 channels, the model takes 4.*all 4 channels"):
        segmentation.predict(model, torch.rand(3, 32, 32))


# --------------------------------------------------------------------------- never unbounded
def test_an_extreme_aspect_ratio_is_refused_before_the_resize(tmp_path):
    strip = tmp_path / "strip.png"
    PIL.new("L", (100000, 1)).save(strip)  # a few hundred bytes
    assert strip.stat().st_size < 2000
    model = tiny("classification")
    model.pretrained_cfg = {"input_size": (3, 224, 224), "crop_pct": 0.875}
    before = peak_rss_bytes()
    with pytest.raises(ResourceLimitError, match=r"7[89]\.\d GB.*8\.0 GB.*aspect ratio is 100,000:1.*crop it"):
        classification.predict(model, str(strip))
    with pytest.raises(ResourceLimitError, match="GB"):
        classification.create_transform(model, max_memory_gb=0.1)(torch.zeros(3, 1, 2000, dtype=torch.uint8))
    assert peak_rss_bytes() - before < 2**30


def test_segmentation_refuses_huge_passes_before_allocating():
    model = tiny("ocr", num_classes=3)
    small = torch.rand(3, 64, 48)
    before = peak_rss_bytes()
    with pytest.raises(ResourceLimitError, match="padded to 100000x100000.*smaller crop_size"):
        segmentation.predict(model, small, crop_size=(100000, 100000))
    with pytest.raises(ResourceLimitError, match="scale 1e\\+06.*smaller scales"):
        segmentation.predict(model, small, scales=(1e6,))
    big = torch.zeros(3, 3000, 3000, dtype=torch.uint8)
    with pytest.raises(ResourceLimitError, match=r"3000x3000.*one pass.*use slide mode \(crop_size="):
        segmentation.predict(model, big)
    with pytest.raises(ResourceLimitError, match="forward passes.*larger stride"):
        segmentation.predict(model, torch.rand(3, 200, 200), crop_size=32, stride=1)
    with pytest.raises(InputError, match="coarsest stride \\(32\\)"):
        segmentation.predict(model, torch.rand(3, 8, 8), crop_size=1, stride=1)
    assert peak_rss_bytes() - before < 2**30


def test_the_budget_comes_from_the_argument_or_the_environment(monkeypatch):
    model = tiny("ocr", num_classes=3)
    image = torch.rand(3, 64, 48)
    need = activation_bytes(model, 64, 48)
    assert memory_budget() == 8 * 10**9
    monkeypatch.setenv(ENV_VAR, str(need / 2 / 1e9))
    with pytest.raises(ResourceLimitError, match=f"{ENV_VAR}"):
        segmentation.predict(model, image)
    assert segmentation.predict(model, image, max_memory_gb=1.0).logits.shape == (3, 64, 48)
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(InputError, match="not a number of gigabytes"):
        segmentation.predict(model, image)
    assert MAX_WINDOWS >= 1000  # sliding windows over a 4000x3000 photo at 3 scales stay allowed


# --------------------------------------------------------------------------- image files
def test_a_decompression_bomb_is_a_resource_limit(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    PIL.new("L", (100, 100)).save(path)
    monkeypatch.setattr(PIL, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels is over twice the limit
    with pytest.raises(ResourceLimitError, match=r"bomb\.png.*10,000 pixels.*decompression-bomb"):
        hrformer.image.load_image(path)


def test_a_truncated_jpeg_is_an_input_error_naming_the_file(tmp_path):
    noise = PIL.effect_noise((64, 48), 64).convert("RGB")
    for cut in (300, None):  # in the header, in the pixel data
        path = tmp_path / f"cut{cut}.jpg"
        noise.save(path, quality=95)
        data = path.read_bytes()
        path.write_bytes(data[:cut or len(data) // 2])
        with pytest.raises(InputError, match=rf"cut{cut}\.jpg.*truncated or corrupt"):
            hrformer.image.load_image(path)


# --------------------------------------------------------------------------- results
def test_segmentation_result_to_dict_and_pictures():
    labels = torch.tensor([[0, 2, 2], [2, 2, 0]])
    logits = torch.nn.functional.one_hot(labels, 3).permute(2, 0, 1).float()
    result = segmentation.SegmentationResult(logits=logits, labels=labels, class_names=("road", "car", "sky"))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["image_size"] == [2, 3] and data["num_classes"] == 3 and "labels" not in data
    assert data["classes"] == [{"index": 2, "name": "sky", "pixels": 4, "fraction": 4 / 6},
                               {"index": 0, "name": "road", "pixels": 2, "fraction": 2 / 6}]
    assert result.to_dict(labels=True)["labels"] == labels.tolist()
    image = torch.zeros(3, 2, 3, dtype=torch.uint8)
    picture = result.overlay(image, alpha=1.0)
    assert isinstance(picture, PIL.Image) and picture.size == (3, 2) and picture.mode == "RGB"
    tensor = result.overlay_tensor(image, alpha=1.0)
    assert tensor.dtype == torch.uint8 and picture.getpixel((1, 0)) == tuple(tensor[:, 0, 1].tolist())

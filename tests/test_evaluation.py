"""hrformer.evaluation and ``hrformer evaluate``: the metrics against pycocotools run directly and
closed forms, the dataset readers on the real on-disk layouts, the loops against the predict
functions, and one clear error for each bad input."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

import hrformer
from hrformer.evaluation import (
    CocoPoseDataset,
    ImageFolderDataset,
    SegmentationDataset,
    SegmentationMetric,
    coco_keypoint_eval,
    coco_keypoint_metrics,
    coco_keypoint_results,
    evaluate_classification,
    evaluate_pose,
    evaluate_segmentation,
    oks_nms,
    shard_indices,
    topk_accuracy,
)
from hrformer.keypoints import COCO_KEYPOINTS
from hrformer.pose import PoseResult

pytest.importorskip("PIL")
pycocotools = pytest.importorskip("pycocotools")
from PIL import Image  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

K = 17
SIGMAS = torch.tensor(COCO_KEYPOINTS.sigmas, dtype=torch.float64)


# --------------------------------------------------------------------------- data the tests make
def _person(ann_id: int, image_id: int, box, generator: torch.Generator, hidden: int = 2):
    """A COCO person: keypoints inside ``box`` (x, y, w, h), the last ``hidden`` unlabelled."""
    x, y, w, h = box
    points = torch.rand(K, 2, generator=generator, dtype=torch.float64) * torch.tensor([w, h]) + torch.tensor([x, y])
    keypoints = []
    for k, (px, py) in enumerate(points.tolist()):
        keypoints += [0.0, 0.0, 0] if k >= K - hidden else [round(px, 2), round(py, 2), 2]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": list(box),
            "area": float(w * h) * 0.8, "keypoints": keypoints, "num_keypoints": K - hidden}


def make_coco(root: Path, sizes=((64, 48), (64, 48), (48, 64)), write_images: bool = True, seed: int = 0):
    """``root/annotations/person_keypoints_val2017.json`` + ``root/val2017/*.jpg`` (two persons on the
    first image, one on the others) and a detection file ``root/dets.json`` (COCO results format:
    each person's box jittered, one non-person and one low-score box). Returns (ann, dets paths)."""
    g = torch.Generator().manual_seed(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "val2017").mkdir(exist_ok=True)
    images, anns, dets = [], [], []
    for i, (h, w) in enumerate(sizes):
        image_id = 100 + i
        name = f"{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        if write_images:
            pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / "val2017" / name)
        boxes = [(4.0, 6.0, w * 0.5, h * 0.7)] + ([(w * 0.4, h * 0.2, w * 0.5, h * 0.7)] if i == 0 else [])
        for box in boxes:
            anns.append(_person(len(anns) + 1, image_id, box, g))
            x, y, bw, bh = box
            dets.append({"image_id": image_id, "category_id": 1, "bbox": [x - 1, y + 1, bw + 2, bh - 1],
                         "score": 0.9 - 0.1 * len(dets)})
    dets.append({"image_id": 100, "category_id": 3, "bbox": [1, 1, 10, 10], "score": 0.99})  # not a person
    dets.append({"image_id": 101, "category_id": 1, "bbox": [1, 1, 10, 10], "score": 0.01})  # low score
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS.names),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]}]
    ann_file = root / "annotations" / "person_keypoints_val2017.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    det_file = root / "dets.json"
    det_file.write_text(json.dumps(dets))
    return ann_file, det_file


def _gt_keypoints(ann):
    kp = torch.tensor(ann["keypoints"], dtype=torch.float64).view(K, 3)
    return kp[:, :2], kp[:, 2]


def _result(keypoints, scores, box_scores=None, areas=None) -> PoseResult:
    n = keypoints.shape[0]
    return PoseResult(keypoints=keypoints.float(), scores=scores.float(), boxes=torch.zeros(n, 4),
                      box_scores=box_scores, keypoint_names=None, skeleton=(), image_size=(64, 48),
                      areas=areas)


def _perfect(ann_file: Path, shift=None):
    """One PoseResult per image holding the annotations' keypoints (``shift`` (dx, dy) added to the
    first person), scores 1."""
    data = json.loads(ann_file.read_text())
    results = []
    for img in data["images"]:
        people = [a for a in data["annotations"] if a["image_id"] == img["id"]]
        kps = torch.stack([_gt_keypoints(a)[0] for a in people])
        if shift is not None and img["id"] == 100:
            kps[0] += torch.tensor(shift, dtype=torch.float64)
        areas = torch.tensor([a["bbox"][2] * a["bbox"][3] * 1.5 for a in people])
        results.append((img["id"], _result(kps, torch.ones(len(people), K), torch.ones(len(people)), areas)))
    return results


def _pycocotools_direct(ann_file: Path, results_file: Path):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(str(results_file))
        ev = COCOeval(gt, dt, iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


# --------------------------------------------------------------------------- COCO keypoint metric
def test_perfect_keypoints_give_ap_1(tmp_path):
    ann_file, _ = make_coco(tmp_path, write_images=False)
    metrics = coco_keypoint_metrics(_perfect(ann_file), ann_file)
    assert list(metrics) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)


def test_shifted_person_gives_the_closed_form_oks_ap(tmp_path):
    """One person, every keypoint moved by d: OKS = mean_k exp(-d^2 / (2 area (2 sigma_k)^2)) over its
    labelled keypoints, and AP over the thresholds 0.5:0.05:0.95 is the fraction of them it reaches."""
    ann_file, _ = make_coco(tmp_path, sizes=((64, 48),), write_images=False)
    data = json.loads(ann_file.read_text())
    ann = data["annotations"][0]  # image 100 has two persons: score only the first
    data["annotations"] = [ann]
    ann_file.write_text(json.dumps(data))
    shift = (2.0, 1.0)
    kps, visible = _gt_keypoints(ann)
    result = _result((kps + torch.tensor(shift)).unsqueeze(0), torch.ones(1, K), torch.ones(1))
    metrics = coco_keypoint_metrics([(100, result)], ann_file)
    d2 = shift[0] ** 2 + shift[1] ** 2
    oks = torch.exp(-d2 / (2 * ann["area"] * (2 * SIGMAS) ** 2))[visible > 0].mean().item()
    thresholds = torch.linspace(0.5, 0.95, 10).tolist()
    assert 0.5 < oks < 0.95  # the test must split the thresholds
    assert metrics["AP"] == pytest.approx(sum(oks >= t for t in thresholds) / 10)


def test_metrics_equal_pycocotools_on_the_results_file(tmp_path):
    """Perturbed predictions with mixed scores: our figures are pycocotools' on the dumped file, and
    that file holds mmpose's bbox_keypoint rescoring (box score x mean of keypoint scores > 0.2)."""
    ann_file, _ = make_coco(tmp_path, write_images=False)
    g = torch.Generator().manual_seed(3)
    results = []
    for image_id, r in _perfect(ann_file, shift=(1.5, -2.0)):
        scores = torch.rand(r.scores.shape, generator=g)
        noisy = r.keypoints + torch.randn(r.keypoints.shape, generator=g)
        results.append((image_id, _result(noisy, scores, torch.rand(len(r), generator=g) + 0.1, r.areas)))
    out = tmp_path / "results.keypoints.json"
    metrics = coco_keypoint_metrics(results, ann_file, results_file=out)
    assert list(metrics.values()) == pytest.approx(_pycocotools_direct(ann_file, out))
    saved = json.loads(out.read_text())
    image_id, r = results[1]
    mine = [d for d in saved if d["image_id"] == image_id][0]
    confident = r.scores[0][r.scores[0] > 0.2].double()
    assert mine["score"] == pytest.approx(float(r.box_scores[0]) * confident.mean().item(), rel=1e-6)
    assert mine["keypoints"][2::3] == pytest.approx(r.scores[0].tolist())
    assert coco_keypoint_eval(ann_file, out) == metrics  # rescoring the file needs no network


def test_bbox_keypoint_score_is_zero_without_confident_keypoints():
    low = _result(torch.zeros(1, K, 2), torch.full((1, K), 0.1), torch.tensor([0.8]))
    [det] = coco_keypoint_results([(1, low)])
    assert det["score"] == 0.0
    [det] = coco_keypoint_results([(1, low)], score_mode="bbox")
    assert det["score"] == pytest.approx(0.8)


def test_oks_nms_drops_duplicates_per_image_only():
    g = torch.Generator().manual_seed(0)
    pose = torch.rand(1, K, 2, generator=g) * 40
    twins = torch.cat([pose, pose + 0.1, pose + 30])  # 0 and 1 coincide, 2 is elsewhere
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert oks_nms(twins, scores, torch.full((3,), 900.0), 0.9) == [1, 2]
    result = _result(twins, torch.ones(3, K), scores)
    assert len(coco_keypoint_results([(1, result)])) == 2
    assert len(coco_keypoint_results([(1, result)], nms_thr=None)) == 3
    split = [(1, _result(twins[:1], torch.ones(1, K), scores[:1])), (2, _result(twins[1:2], torch.ones(1, K), scores[1:2]))]
    assert len(coco_keypoint_results(split)) == 2  # OKS-NMS never crosses images


def test_missing_pycocotools_is_one_clear_message(monkeypatch, tmp_path, capsys):
    import builtins

    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    with pytest.raises(ImportError, match=r"pip install 'hrformer\[eval\]'"):
        coco_keypoint_metrics([], tmp_path / "x.json")
    from hrformer.cli import main

    assert main(["evaluate", "pose", "--data", str(tmp_path), "--model", "hrformer_s.coco_256x192"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'hrformer[eval]'" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- segmentation metric
def test_segmentation_metric_closed_form_and_ignore():
    metric = SegmentationMetric(3, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1], [1, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [1, 0, 2, 0]])
    metric.update(pred, target)
    out = metric.compute()
    # class 0: I=1, pred 2, label 2 -> 1/3; class 1: I=3, pred 4, label 3 -> 3/4; class 2: I=0 -> 0
    assert out["IoU"] == pytest.approx([1 / 3, 0.75, 0.0])
    assert out["mIoU"] == pytest.approx((1 / 3 + 0.75 + 0) / 3)
    assert out["Acc"] == pytest.approx([0.5, 1.0, 0.0])
    assert out["aAcc"] == pytest.approx(4 / 6)


def test_segmentation_metric_perfect_and_absent_class():
    metric = SegmentationMetric(4)
    labels = torch.tensor([[0, 1], [2, 2]])
    metric.update(labels, labels)
    out = metric.compute()
    assert out["mIoU"] == 1.0 and out["aAcc"] == 1.0 and math.isnan(out["IoU"][3])  # class 3 nowhere: left out
    with pytest.raises(hrformer.InputError, match="trainIds"):
        metric.update(labels, torch.tensor([[0, 1], [2, 33]]))


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    out = topk_accuracy(logits, torch.tensor([1, 2, 0]), topk=(1, 2))
    assert out == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_shards_cover_every_item_once():
    for n in (0, 1, 5, 8):
        shards = [shard_indices(n, r, 3) for r in range(3)]
        assert sorted(i for s in shards for i in s) == list(range(n))


# --------------------------------------------------------------------------- readers and bad input
def test_coco_reader_boxes(tmp_path):
    ann_file, det_file = make_coco(tmp_path)
    gt = CocoPoseDataset(tmp_path)
    assert [s[0] for s in gt.samples] == [100, 101, 102] and gt.num_boxes == 4
    dets = CocoPoseDataset(tmp_path, det_file, box_score_thr=0.05)
    assert dets.num_boxes == 4  # the category-3 and the 0.01 boxes left out
    item = dets[0]
    x, y, w, h = json.loads(det_file.read_text())[0]["bbox"]
    assert item["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])
    assert CocoPoseDataset(tmp_path, det_file).num_boxes == 5


def test_bad_inputs_are_one_clear_error(tmp_path):
    with pytest.raises(hrformer.InputError, match="no such folder"):
        CocoPoseDataset(tmp_path / "missing")
    ann_file, det_file = make_coco(tmp_path)
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(hrformer.InputError, match="without keypoint categories"):
        CocoPoseDataset(tmp_path, ann_file=instances)
    dets = json.loads(det_file.read_text()) + [{"image_id": 999, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}]
    det_file.write_text(json.dumps(dets))
    with pytest.raises(hrformer.InputError, match="image id 999"):
        CocoPoseDataset(tmp_path, det_file)
    det_file.write_text("[]")
    with pytest.raises(hrformer.InputError, match="no person boxes"):
        CocoPoseDataset(tmp_path, det_file)
    (tmp_path / "classes").mkdir()
    with pytest.raises(hrformer.InputError, match="no class folders"):
        ImageFolderDataset(tmp_path / "classes")


def make_cityscapes(root: Path, n: int = 2, size=(24, 32)):
    """Cityscapes' layout: labelIds 7 (road), 26 (car), 0 (unlabelled) and 4 (static: not a class)."""
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        city = ["aachen", "bonn"][i % 2]
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
        stem = f"{city}_000000_{i:06d}"
        pixels = (torch.rand(*size, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        ids = torch.tensor([7, 26, 0, 4], dtype=torch.uint8)[torch.randint(0, 4, size, generator=g)]
        Image.fromarray(ids.numpy()).save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")


def test_cityscapes_reader_maps_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    data = SegmentationDataset.cityscapes(tmp_path)
    assert len(data) == 2
    raw = torch.from_numpy(__import__("numpy").array(Image.open(data.pairs[0][1]))).long()
    label = data[0]["label"]
    assert set(label.unique().tolist()) <= {0, 13, 255}
    assert torch.equal(label == 0, raw == 7) and torch.equal(label == 13, raw == 26)
    assert torch.equal(label == 255, (raw == 0) | (raw == 4))


def test_reduce_zero_label_layout(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassContext").mkdir()
    Image.new("RGB", (4, 2)).save(tmp_path / "JPEGImages" / "a.jpg")
    Image.fromarray(torch.tensor([[0, 1, 59, 255], [2, 0, 0, 0]], dtype=torch.uint8).numpy()).save(
        tmp_path / "SegmentationClassContext" / "a.png")
    data = SegmentationDataset.from_layout(tmp_path, "pascal_context")
    assert data[0]["label"].tolist() == [[255, 0, 58, 255], [1, 255, 255, 255]]


# --------------------------------------------------------------------------- the loops
def tiny_model(head, **kwargs):
    """HRFormer-T with one module and one block per stage (every kind of layer, a fraction of the time)."""
    from hrformer.config import HRFORMER_T
    from hrformer.heads import HEADS

    torch.manual_seed(0)
    config = HRFORMER_T.with_(modules=(1, 1, 1, 1), blocks=1, **HEADS[head].config_defaults)
    return hrformer.HRFormer(config, head=head, **kwargs).eval()


@pytest.fixture(scope="module")
def pose_model():
    return tiny_model("pose")


def test_evaluate_pose_equals_predict_and_pycocotools(tmp_path, pose_model):
    """End to end with an untrained model: the loop's keypoints are hrformer.pose.predict's on the
    same images and boxes, and its AP is pycocotools' on the results file it dumped."""
    ann_file, det_file = make_coco(tmp_path)
    dataset = CocoPoseDataset(tmp_path, det_file)
    out = tmp_path / "results.json"
    result = evaluate_pose(pose_model, dataset, input_size=(64, 48), batch_size=3, workers=1,
                           results_file=str(out), progress=False)
    assert result.num_images == 3 and result.num_instances == 5
    assert list(result.metrics.values()) == pytest.approx(_pycocotools_direct(ann_file, out))
    pairs = []
    for i in range(len(dataset)):
        item = dataset[i]
        boxes = torch.cat([item["boxes"], item["box_scores"].double().unsqueeze(1)], 1)
        pairs.append((item["image_id"], hrformer.pose.predict(pose_model, item["path"], boxes, input_size=(64, 48))))
    expected = coco_keypoint_results(pairs)
    saved = json.loads(out.read_text())
    assert [d["image_id"] for d in saved] == [d["image_id"] for d in expected]
    for mine, theirs in zip(saved, expected):
        assert mine["keypoints"] == pytest.approx(theirs["keypoints"], abs=1e-3)
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)


def test_corrupt_image_stops_the_run(tmp_path, pose_model):
    make_coco(tmp_path)
    (tmp_path / "val2017" / "000000000101.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(hrformer.InputError, match="000000000101.jpg"):
        evaluate_pose(pose_model, CocoPoseDataset(tmp_path), input_size=(64, 48), workers=0, progress=False)


def test_evaluate_segmentation_equals_predict(tmp_path):
    make_cityscapes(tmp_path)
    model = tiny_model("ocr", num_classes=19)
    dataset = SegmentationDataset.cityscapes(tmp_path)
    result = evaluate_segmentation(model, dataset, workers=0, save_dir=str(tmp_path / "pred"), progress=False)
    expected = SegmentationMetric(19)
    for i in range(len(dataset)):
        item = dataset[i]
        expected.update(hrformer.segmentation.predict(model, item["path"]).labels, item["label"])
    _same_segmentation_metrics(result.metrics, expected.compute())
    from hrformer.evaluation import score_label_folder

    _same_segmentation_metrics(score_label_folder(dataset, str(tmp_path / "pred"), 19), result.metrics)


def _same_segmentation_metrics(a, b):
    assert set(a) == set(b)
    for key in a:
        assert a[key] == pytest.approx(b[key], nan_ok=True)


def make_image_folder(root: Path, classes=("n01", "n02", "n03"), per_class: int = 1):
    g = torch.Generator().manual_seed(2)
    for name in classes:
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            pixels = (torch.rand(40, 52, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(root / name / f"{j}.png")


def test_evaluate_classification_equals_predict(tmp_path):
    make_image_folder(tmp_path)
    model = tiny_model("classification", num_classes=3)
    model.pretrained_cfg = {"input_size": (3, 64, 64), "crop_pct": 0.875, "interpolation": "bicubic"}  # small, fast
    dataset = ImageFolderDataset(tmp_path)
    result = evaluate_classification(model, dataset, batch_size=2, workers=0, topk=(1, 2), progress=False)
    predicted = hrformer.classification.predict(model, [path for path, _ in dataset.samples], topk=2)
    hits = [r.indices.tolist() for r in predicted]
    targets = [t for _, t in dataset.samples]
    assert result.num_images == 3
    assert result.metrics["top1"] == pytest.approx(sum(h[0] == t for h, t in zip(hits, targets)) / 3)
    assert result.metrics["top2"] == pytest.approx(sum(t in h for h, t in zip(hits, targets)) / 3)


# --------------------------------------------------------------------------- the command
def _saved(model, path: Path) -> str:
    hrformer.save_pretrained(model, str(path))
    return str(path)


def test_cli_evaluate_pose_table_and_json(tmp_path, pose_model, capsys):
    from hrformer.cli import main

    ann_file, det_file = make_coco(tmp_path / "coco")
    model_dir = _saved(pose_model, tmp_path / "model")
    out, results = tmp_path / "eval.json", tmp_path / "kpts.json"
    code = main(["evaluate", "pose", "--data", str(tmp_path / "coco"), "--boxes", str(det_file), "--model", model_dir,
                 "--workers", "0", "--input-size", "64", "48", "--no-progress", "--json", str(out),
                 "--save-predictions", str(results)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["num_images"] == 3 and report["num_instances"] == 5 and report["protocol"]["flip"] is True
    assert len(report["weights_sha256"]) == 64 and report["machine"]["cpu"] and report["machine"]["allocator"]
    assert "AP50" in printed and f"{100 * report['metrics']['AP']:.2f}" in printed
    assert list(report["metrics"].values()) == pytest.approx(_pycocotools_direct(ann_file, results))
    code = main(["evaluate", "pose", "--data", str(tmp_path / "coco"), "--rescore", str(results), "--no-progress",
                 "--json", str(tmp_path / "rescored.json")])
    assert code == 0
    assert json.loads((tmp_path / "rescored.json").read_text())["metrics"] == pytest.approx(report["metrics"])


def test_cli_evaluate_errors_are_one_line(tmp_path, capsys):
    from hrformer.cli import main

    assert main(["evaluate", "pose", "--data", str(tmp_path / "nowhere"), "--model", "hrformer_t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --data") and err.count("\n") == 1
    _, det_file = make_coco(tmp_path)
    det_file.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 1}]))
    model_dir = _saved(tiny_model("pose"), tmp_path / "m")
    assert main(["evaluate", "pose", "--data", str(tmp_path), "--boxes", str(det_file), "--model", model_dir,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "image id 7" in err and err.count("\n") == 1


def test_cli_evaluate_segment_and_classify(tmp_path, capsys):
    from hrformer.cli import main

    make_cityscapes(tmp_path / "cityscapes", n=1)
    seg_dir = _saved(tiny_model("ocr", num_classes=19), tmp_path / "seg")
    assert main(["evaluate", "segment", "--data", str(tmp_path / "cityscapes"), "--model", seg_dir, "--workers", "0",
                 "--no-progress", "--json", str(tmp_path / "seg.json")]) == 0
    seg = json.loads((tmp_path / "seg.json").read_text())
    assert seg["protocol"]["dataset"] == "cityscapes" and len(seg["metrics"]["IoU"]) == 19
    assert "IoU road" in capsys.readouterr().out
    make_image_folder(tmp_path / "imagenet" / "val", classes=("n01", "n02"))
    cls_dir = _saved(tiny_model("classification", num_classes=5), tmp_path / "cls")
    assert main(["evaluate", "classify", "--data", str(tmp_path / "imagenet"), "--model", cls_dir, "--workers", "0",
                 "--no-progress", "--json", str(tmp_path / "cls.json")]) == 0
    cls = json.loads((tmp_path / "cls.json").read_text())
    assert cls["num_images"] == 2 and set(cls["metrics"]) == {"top1", "top5"}

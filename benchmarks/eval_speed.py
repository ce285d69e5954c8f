"""What the evaluation loop costs beside the network: ``hrformer evaluate pose``'s loop against bare
``hrformer.pose.predict`` calls on the same images and boxes (the fused model, flip test).

A synthetic COCO-sized run: ``--images`` JPEGs of 480x640 (COCO's usual size) with 1-2 person boxes
each (COCO val2017 has ~1.2 detected persons per image), ground truth and a detection file written
to a temporary folder. Three timings, each the best of ``--repeats``:

* ``network``: the floor: the same crops cut beforehand (not timed), the network with the flip test
  and the heatmap decoding, ``--batch-size`` crops per pass, nothing else;
* ``predict``: the images decoded beforehand (not timed), one ``predict`` call per image;
* ``loop``: :func:`hrformer.evaluation.evaluate_pose` with ``--workers`` DataLoader workers (decoding
  and cropping in the workers, crops of several images per forward pass), metric included;
* ``loop_w0``: the same without workers (everything in the main process), to show the overlap.

    python -m benchmarks.eval_speed --images 60 --arch hrformer_t --json benchmarks/results/eval_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import hrformer
from hrformer.evaluation import CocoPoseDataset, evaluate_pose
from hrformer.fast.cpu import cpu_model


def make_dataset(root: Path, images: int, seed: int = 0) -> Path:
    from PIL import Image

    from hrformer.keypoints import COCO_KEYPOINTS

    g = torch.Generator().manual_seed(seed)
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    infos, anns, dets = [], [], []
    for i in range(images):
        h, w = 480, 640
        name = f"{i + 1:012d}.jpg"
        pixels = (torch.rand(h // 8, w // 8, 3, generator=g) * 255).to(torch.uint8)
        Image.fromarray(pixels.numpy()).resize((w, h)).save(root / "val2017" / name, quality=90)
        infos.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for p in range(1 + (i % 5 == 0)):  # 1.2 persons per image
            x, y = 50 + 250 * p + float(torch.rand(1, generator=g)) * 40, 40.0
            bw, bh = 180.0, 400.0
            kps = []
            for _ in range(17):
                kps += [x + float(torch.rand(1, generator=g)) * bw, y + float(torch.rand(1, generator=g)) * bh, 2]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, bw, bh], "area": bw * bh * 0.6, "keypoints": kps, "num_keypoints": 17})
            dets.append({"image_id": i + 1, "category_id": 1, "bbox": [x - 3, y + 2, bw + 5, bh - 4], "score": 0.95})
    cats = [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINTS.names),
             "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]}]
    (root / "annotations" / "person_keypoints_val2017.json").write_text(
        json.dumps({"images": infos, "annotations": anns, "categories": cats}))
    (root / "dets.json").write_text(json.dumps(dets))
    return root / "dets.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--arch", default="hrformer_t")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-fuse", dest="fuse", action="store_false")
    parser.add_argument("--json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = hrformer.create_model(args.arch, head="pose").eval()
    if args.fuse:
        model.fuse_for_inference()
    with tempfile.TemporaryDirectory() as tmp:
        det_file = make_dataset(Path(tmp), args.images)
        dataset = CocoPoseDataset(tmp, det_file)
        items = [dataset[i] for i in range(len(dataset))]
        images = [hrformer.image.load_image(item["path"]) for item in items]
        boxes = [torch.cat([it["boxes"], it["box_scores"].double().unsqueeze(1)], 1) for it in items]
        hrformer.pose.predict(model, images[0], boxes[0])  # warm-up

        def bare() -> float:
            start = time.perf_counter()
            for image, box in zip(images, boxes):
                hrformer.pose.predict(model, image, box, batch_size=args.batch_size)
            return time.perf_counter() - start

        from hrformer.evaluation.runner import _pose_settings, _PoseCrops

        cfg, size, method = _pose_settings(model, None, None)
        prepare = _PoseCrops(cfg, size, method == "udp")
        crops = torch.cat([prepare(item)["crops"] for item in items])
        flip_indices = hrformer.pose.keypoint_info(model).flip_indices

        def network() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                for first in range(0, crops.shape[0], args.batch_size):
                    x = crops[first:first + args.batch_size]
                    maps = (model(x) + hrformer.pose.flip_heatmaps(model(x.flip(-1)), flip_indices)) * 0.5
                    hrformer.pose.decode_heatmaps(maps, size, method)
            return time.perf_counter() - start

        def loop(workers: int) -> float:
            result = evaluate_pose(model, dataset, batch_size=args.batch_size, workers=workers, progress=False)
            return result.wall_time_s

        timings = {"network": [], "predict": [], "loop": [], "loop_w0": []}
        for _ in range(args.repeats):  # interleaved, so that a load change hits all of them
            timings["network"].append(network())
            timings["predict"].append(bare())
            timings["loop"].append(loop(args.workers))
            timings["loop_w0"].append(loop(0))
    n = len(dataset)
    best = {k: min(v) for k, v in timings.items()}
    report = {
        "arch": args.arch, "fused": args.fuse, "images": n, "persons": dataset.num_boxes, "flip": True,
        "batch_size": args.batch_size, "workers": args.workers,
        "images_per_s": {k: n / v for k, v in best.items()},
        "loop_over_predict": best["predict"] / best["loop"],
        "loop_over_network": best["network"] / best["loop"],
        "seconds": timings, "cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "load_average": os.getloadavg(),
    }
    print(json.dumps({k: report[k] for k in ("images", "persons", "images_per_s", "loop_over_predict",
                                             "loop_over_network", "cpu",
                                             "load_average")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

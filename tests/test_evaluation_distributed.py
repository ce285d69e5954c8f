"""``torchrun --nproc_per_node=2 -m hrformer evaluate ...`` on CPU (gloo) gives one process's metrics:
every image scored once (an odd number of images, so the shards differ in size)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("PIL")
pytest.importorskip("pycocotools")

from test_evaluation import make_cityscapes, make_coco, tiny_model  # noqa: E402

import hrformer  # noqa: E402


def _run(args, tmp_path, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 \
        else [sys.executable]
    out = subprocess.run([*launcher, "-m", "hrformer", "evaluate", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path):
    make_coco(tmp_path / "coco", sizes=((64, 48), (64, 48), (48, 64), (64, 64), (56, 48)))
    make_cityscapes(tmp_path / "cityscapes", n=3)
    hrformer.save_pretrained(tiny_model("pose"), str(tmp_path / "pose"))
    hrformer.save_pretrained(tiny_model("ocr", num_classes=19), str(tmp_path / "seg"))
    reports = {}
    for nproc in (1, 2):
        _run(["pose", "--data", "coco", "--boxes", "coco/dets.json", "--model", "pose", "--input-size", "64", "48",
              "--batch-size", "1", "--workers", "1", "--no-progress", "--json", f"pose{nproc}.json",
              "--save-predictions", f"kpts{nproc}.json"], tmp_path, nproc)
        stdout = _run(["segment", "--data", "cityscapes", "--model", "seg", "--workers", "1", "--no-progress",
                       "--json", f"seg{nproc}.json"], tmp_path, nproc)
        assert stdout.count("mIoU") == 1  # rank 0 reports, once
        reports[nproc] = {task: json.loads((tmp_path / f"{task}{nproc}.json").read_text()) for task in ("pose", "seg")}
    one, two = reports[1], reports[2]
    assert two["pose"]["world_size"] == 2 and one["pose"]["world_size"] == 1
    assert one["pose"]["num_images"] == two["pose"]["num_images"] == 5
    assert one["pose"]["num_instances"] == two["pose"]["num_instances"] == 7
    assert one["pose"]["metrics"] == two["pose"]["metrics"]
    assert json.loads((tmp_path / "kpts1.json").read_text()) == json.loads((tmp_path / "kpts2.json").read_text())
    assert one["seg"]["num_images"] == two["seg"]["num_images"] == 3
    assert json.dumps(one["seg"]["metrics"]) == json.dumps(two["seg"]["metrics"])  # NaN-aware: same text


@pytest.mark.slow
def test_torchrun_error_in_one_shard_stops_every_process(tmp_path):
    """A corrupt image in rank 1's share: both processes stop with its one-line error, none waits."""
    make_coco(tmp_path / "coco")
    (tmp_path / "coco" / "val2017" / "000000000101.jpg").write_bytes(b"not an image")  # index 1: rank 1
    hrformer.save_pretrained(tiny_model("pose"), str(tmp_path / "pose"))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    out = subprocess.run([*launcher, "-m", "hrformer", "evaluate", "pose", "--data", "coco", "--model", "pose",
                          "--input-size", "64", "48", "--workers", "0", "--no-progress"], cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    # The failing rank prints its error; torchrun may stop the other before it prints its own copy.
    assert 1 <= len(errors) <= 2 and all("000000000101.jpg" in line for line in errors)

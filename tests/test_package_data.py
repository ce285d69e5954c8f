"""Data files shipped with the package: found through importlib.resources, and inside the built wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = ["hrformer/data/imagenet_classes.txt"]


def test_data_files_found_by_importlib_resources():
    for name in DATA_FILES:
        text = resources.files("hrformer").joinpath(name.split("/", 1)[1]).read_text(encoding="utf-8")
        assert len(text.splitlines()) == 1000


@pytest.mark.slow
def test_wheel_contains_the_data_files(tmp_path):
    # Build from a clean copy: setuptools' build/ folder of the working tree may hold stale files.
    source = tmp_path / "source"
    source.mkdir()
    for item in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / item, source / item)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    # --no-build-isolation: no network at test time (setuptools comes from this environment)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("hrformer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in DATA_FILES:
            assert name in names, f"{name} missing from the wheel: add it to [tool.setuptools.package-data]"
            assert archive.read(name).decode("utf-8").splitlines()[999] == "toilet tissue"

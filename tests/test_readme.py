"""The README's quick start runs as written, offline (the conventions are in doc_examples.py; the
pages under docs/ are run by test_docs.py)."""

from __future__ import annotations

import pytest

from doc_examples import ROOT, page_sections, run_section

README = ROOT / "README.md"


def test_the_quick_start_is_the_readmes_only_example():
    """Any other README example needs its own test here (reference examples belong in docs/)."""
    assert list(page_sections(README)) == ["Quick start"]


def test_quick_start_runs_offline(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    namespace = run_section(README, "Quick start", tmp_path, monkeypatch, shrink_input=True)
    assert [tuple(m.shape) for m in namespace["maps"]] == [(1, 18, 50, 38), (1, 36, 25, 19), (1, 72, 13, 10),
                                                           (1, 144, 7, 5)]
    assert namespace["result"].keypoints.shape == (1, 17, 2) and (tmp_path / "pose.png").exists()
    assert tuple(namespace["labels"].shape) == (120, 160) and int(namespace["labels"].max()) < 19
    assert len(namespace["top5"].names) == 5 and namespace["top5"].probabilities.sum() <= 1.0 + 1e-6


def test_set_up_commands_are_the_ones_ci_runs():
    """The README's set-up installs and tests as .ci/run does."""
    ci = (ROOT / ".ci" / "run").read_text()
    readme = README.read_text()
    for command in ("pip install -q torch==2.13.0", "pip install -q -e '.[test]'", "pytest -q\n"):
        assert command in ci
    assert "pip install torch==2.13.0 && pip install -e '.[test]'\npython -m pytest -q\n" in readme


def test_what_is_where_links_every_page_under_docs():
    readme = README.read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages and [p for p in pages if f"](docs/{p})" not in readme] == []

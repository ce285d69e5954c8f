"""What the command-line tests share: running ``hrformer ARGS`` in-process and checking that a
mistake is one ``error:`` line with exit status 2."""

from __future__ import annotations

import pytest

from hrformer.cli import main


def run_cli(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_user_error(capsys, argv, *fragments) -> str:
    status, _, err = run_cli(capsys, *argv)
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails the test if a command loads a model before checking its command line."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the command line was checked")

    for command in ("pose", "segment", "export", "classify"):
        monkeypatch.setattr(f"hrformer.cli.{command}.load_model", forbidden)

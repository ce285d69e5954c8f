"""The command line's error policy: a user's mistake is one ``error: ...`` line and exit status 2.

User mistakes (a missing or unreadable file, weights that do not fit, an output that cannot be
written, an option out of range, a missing optional package) become :class:`UserError`, which
:func:`hrformer.cli.main` prints without a traceback. The checks that need no model (options,
output paths, devices) run before any model is built, so a typo costs no inference time. Anything
else is a bug and still raises with its traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional, Sequence

import torch

from ..errors import HRFormerError

EXIT_USER_ERROR = 2

# The pip command that brings each optional package (pyproject.toml's extras where one exists).
INSTALL_HINTS = {
    "PIL": "pip install 'hrformer[draw]' (or pip install pillow)",
    "onnx": "pip install onnx onnxruntime (both in pip install 'hrformer[test]')",
    "onnxruntime": "pip install onnxruntime (in pip install 'hrformer[test]')",
    "numpy": "pip install numpy",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class UserError(Exception):
    """A mistake in the command line or its files: printed as one ``error:`` line, exit status 2."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def one_line(message: str) -> str:
    """Multi-line library messages (lists of sources tried, ...) joined into one line."""
    return "; ".join(part.strip(" -") for part in str(message).splitlines() if part.strip(" -"))


def missing_package(error: ImportError, needed_for: str) -> UserError:
    top = (error.name or "").split(".")[0]
    hint = INSTALL_HINTS.get(top)
    if hint is None:  # the library's own ImportError already names the fix
        return UserError(one_line(str(error)))
    return UserError(f"{needed_for} needs the optional package {top!r}: {hint}")


# Errors that are the user's to fix: the package's own refusals, and files that are missing, not
# readable or not writable. Anything else raised inside :func:`user_errors` is a bug and keeps its traceback.
USER_FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


@contextlib.contextmanager
def user_errors(what: str, needed_for: Optional[str] = None) -> Iterator[None]:
    """Turn the package's refusals of user input inside the block into :class:`UserError`.

    ``what`` names the input ("--weights x.pth", "image photo.jpg") when the library's message may
    not. Only :class:`hrformer.HRFormerError`, the file errors of :data:`USER_FILE_ERRORS` and a
    missing optional package are turned; the cause stays attached (``raise ... from``).
    """
    try:
        yield
    except UserError:
        raise
    except ImportError as e:
        raise missing_package(e, needed_for or what) from e
    except (HRFormerError, *USER_FILE_ERRORS) as e:
        text = one_line(str(e) or type(e).__name__)
        raise UserError(text if what in text or not what else f"{what}: {text}") from e


# --------------------------------------------------------------------------- checks before any work
def check_output(path: str, flag: str, suffixes: Optional[Sequence[str]] = None, make_dirs: bool = False) -> Path:
    """An output path that will be writable: a known extension, not a directory, its folder an
    existing writable directory (``make_dirs``: the nearest existing ancestor is writable)."""
    out = Path(path)
    if out.is_dir():
        fail(f"{flag} {path}: is a directory; give a file name")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        fail(f"{flag} {path}: unknown extension {out.suffix or '(none)'!r}; use {', '.join(suffixes)}")
    parent = out.parent
    if make_dirs:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        fail(f"{flag} {path}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        fail(f"{flag} {path}: not writable")
    return out


def check_input(path: str, what: str) -> None:
    if not os.path.exists(path):
        fail(f"{what} {path}: no such file or directory")
    if not os.access(path, os.R_OK):
        fail(f"{what} {path}: not readable (permission denied)")


def check_device(text: str) -> torch.device:
    """``--device``: a device torch knows and this machine has."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as e:
        fail(f"--device {text!r}: {one_line(str(e))}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fail(f"--device {text}: CUDA is not available here (torch {torch.__version__}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            fail(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            fail(f"--device {text}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, ValueError) as e:
            fail(f"--device {text}: not usable here ({one_line(str(e))})")
    return device


def check_fraction(value: float, flag: str) -> float:
    if not 0.0 <= value <= 1.0:  # NaN fails too
        fail(f"{flag} {value}: must be within [0, 1]")
    return value


# --------------------------------------------------------------------------- JSON
def _finite(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Strict JSON (RFC 8259): NaN and +-Inf become ``null``, tensors lists."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False)


def write_json(obj: Any, path: str, flag: str = "--json") -> None:
    """``obj`` as strict JSON (:func:`to_json`) into ``path``, saying so; a failure is a user error."""
    with user_errors(f"{flag} {path}"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_json(obj) + "\n")
    print(f"wrote {path}")


__all__ = [
    "EXIT_USER_ERROR", "IMAGE_SUFFIXES", "UserError", "check_device", "check_fraction", "check_input",
    "check_output", "fail", "missing_package", "one_line", "to_json", "user_errors", "write_json",
]

"""The command line's error policy: a user's mistake is one ``error: ...`` line and exit status 2.

User mistakes (a missing or unreadable file, weights that do not fit, an output that cannot be
written, an option out of range, a missing optional package, running out of memory) become
:class:`UserError`, which :func:`hrformer.cli.main` prints without a traceback, its advice in the
command's own flags (:func:`command_advice`). The checks that need no model (options,
output paths, devices) run before any model is built, so a typo costs no inference time. Anything
else is a bug and still raises with its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from typing import Collection, Iterator, NoReturn, Optional

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
# ... and the plain OSErrors that say the same of a path or a disk (a name too long, a full or
# read-only file system, a symlink loop).
USER_ERRNOS = frozenset(getattr(errno, name) for name in ("ENAMETOOLONG", "ENOSPC", "EROFS", "EDQUOT", "ELOOP")
                        if hasattr(errno, name))


@contextlib.contextmanager
def user_errors(what: str, needed_for: Optional[str] = None) -> Iterator[None]:
    """Turn the package's refusals of user input inside the block into :class:`UserError`.

    ``what`` names the input ("--weights x.pth", "image photo.jpg") when the library's message may
    not. Only :class:`hrformer.HRFormerError`, the file errors of :data:`USER_FILE_ERRORS` (and
    OSErrors of :data:`USER_ERRNOS`) and a missing optional package are turned; the cause stays
    attached (``raise ... from``).
    """
    try:
        yield
    except UserError:
        raise
    except ImportError as e:
        raise missing_package(e, needed_for or what) from e
    except (HRFormerError, OSError) as e:
        if not isinstance(e, (HRFormerError, *USER_FILE_ERRORS)) and e.errno not in USER_ERRNOS:
            raise  # another OSError (a decoder's, a socket's): a bug, keeps its traceback
        text = one_line(str(e) or type(e).__name__)
        raise UserError(text if what in text or not what else f"{what}: {text}") from e


# Out of memory, as each backend says it: CUDA / MPS raise torch.OutOfMemoryError (torch.cuda's
# before torch 2.5), the CPU allocator a RuntimeError, Python a MemoryError.
_OUT_OF_MEMORY = (getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), MemoryError)
_OUT_OF_MEMORY_TEXT = ("can't allocate memory", "out of memory")


@contextlib.contextmanager
def out_of_memory(advice: str) -> Iterator[None]:
    """Running out of memory inside the block is one line with ``advice`` (the command's way out:
    a smaller batch or input, slide mode), not a traceback."""
    try:
        yield
    except (*_OUT_OF_MEMORY, RuntimeError) as e:
        if not isinstance(e, _OUT_OF_MEMORY) and not any(t in str(e) for t in _OUT_OF_MEMORY_TEXT):
            raise
        raise UserError(f"out of memory ({type(e).__name__}): {advice}") from e


# --------------------------------------------------------------------------- advice in the command's terms
# Library messages advise Python calls; each command says the same with its own flags. ``usage`` is
# the command's way to give weights, e.g. "--model {name} --weights {file}" or
# "hrformer export {name} OUT.onnx --weights {file}".
_CREATE_WITH_FILE = re.compile(
    r"(?:hrformer\.)?create_model\(\s*(['\"]?)(?P<name>[^'\",()]+)\1\s*,\s*(?:pretrained|checkpoint_path)\s*=\s*"
    r"(['\"]?)(?P<file>[^'\"()]+)\3\s*\)(?:\s*\(or checkpoint_path=[^)]*\))?"
)
_FLAG_ADVICE = re.compile(r"--model (?P<name>\S+) --weights (?P<file>[^\s)]+)")
_KEYWORD_ADVICE = re.compile(r"(?P<either>,? or )?\b(?P<key>[a-z_]+)\s*=\s*(?P<q>['\"]?)(?P<value>[\w.\-]+)(?P=q)")
_PLACEHOLDERS = {"path": "FILE", "path/to/checkpoint": "FILE", "...": "FILE", "FILE": "FILE", "arch": "ARCH",
                 "NAME": "ARCH"}


def command_advice(message: str, usage: str, options: Collection[str] = ()) -> str:
    """``message`` with its advice in the command's flags: ``create_model('hrformer_t',
    pretrained='path')`` (and, for a command without ``--model``, ``--model X --weights F``)
    becomes ``usage`` filled with the name and file; a keyword the command has as an option
    (``options``: its argparse dests), ``method='msra'``, becomes its flag, ``--method msra``; the
    ``head=`` alternative goes where the command has no ``--head`` (its task fixes the head)."""
    def fill(match: "re.Match[str]") -> str:
        name, file = match.group("name").strip(), match.group("file").strip()
        return usage.format(name=_PLACEHOLDERS.get(name, name), file=_PLACEHOLDERS.get(file, file))

    def keyword(match: "re.Match[str]") -> str:
        key, either = match.group("key"), match.group("either") or ""
        if key in options:
            return f"{either}--{key.replace('_', '-')} {match.group('value')}"
        if key == "head" and either:
            return ""
        return match.group(0)

    message = _CREATE_WITH_FILE.sub(fill, message)
    if not usage.startswith("--model "):
        message = _FLAG_ADVICE.sub(fill, message)
    return _KEYWORD_ADVICE.sub(keyword, message)


# --------------------------------------------------------------------------- checks before any work
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
        if device.type == "meta":
            fail(f"--device {text}: meta tensors hold no data (shapes only); use cpu or cuda")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, ValueError) as e:
            fail(f"--device {text}: not usable here ({one_line(str(e))})")
    return device


def check_fraction(value: float, flag: str) -> float:
    if not 0.0 <= value <= 1.0:  # NaN fails too
        fail(f"{flag} {value}: must be within [0, 1]")
    return value


__all__ = [
    "EXIT_USER_ERROR", "IMAGE_SUFFIXES", "UserError", "check_device", "check_fraction", "check_input",
    "command_advice", "fail", "missing_package", "one_line", "out_of_memory", "user_errors",
]

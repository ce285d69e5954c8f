"""What the commands read and write: checked before any model is built, written atomically, never
over an input.

* :func:`check_output`: an output path that can be written (extension, directory, name length);
* :func:`check_no_overwrite`: no output is an input (image, boxes, weights, a file of the model
  directory) or another output, however the paths are spelt (``./``, symlinks, hard links);
* :func:`atomic_output`: every file goes to a temporary file in its directory and is renamed over
  the target once complete, so a failure (a full disk, Ctrl-C, an exception) never leaves a
  half-written file; the file gets the usual umask mode (``mkstemp`` alone would leave 0600);
* :func:`write_json`: the one JSON writer (strict JSON, floats at float32's precision), and
  :func:`save_picture` the one picture writer;
* :func:`read_image`: the one image reader, whose refusals (decompression bombs, truncated files)
  are one-line errors, read before any model is built.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch

from ..atomic import atomic_paths
from ..errors import HRFormerError, InputError
from .errors import fail, user_errors

# (what the path is, for the message; the path or None when not given)
Labelled = Tuple[str, Optional[str]]

_FLOAT32_MAX = 3.4028234663852886e38
_DEFAULT_NAME_MAX = 255


# --------------------------------------------------------------------------- checks before any work
def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no such limit
        return _DEFAULT_NAME_MAX


def check_output(path: str, flag: str, suffixes: Optional[Sequence[str]] = None, make_dirs: bool = False) -> Path:
    """An output path that will be writable: a known extension, not a directory, a name the file
    system takes, its folder an existing writable directory (``make_dirs``: the nearest existing
    ancestor is writable)."""
    out = Path(path)
    name_max = _name_max(out.parent if os.path.isdir(out.parent) else Path("."))  # isdir: False on any OSError
    too_long = [part for part in out.parts if len(os.fsencode(part)) > name_max]
    if too_long:  # checked first: the file system refuses even to look such a name up
        fail(f"{flag} {path[:40]}...: a name of {len(os.fsencode(too_long[0]))} bytes; this file system takes "
             f"at most {name_max}")
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


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same real path (``./x``, ``dir/../x``, symlinks), or
    the same inode (hard links, case-insensitive file systems)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one of them does not exist (yet): not the same file
        return False


def model_files(flag: str, source: Optional[str]) -> List[Labelled]:
    """The files on disk a model source (``--model`` / ``SOURCE`` / ``--weights``) reads, which no
    output may replace: a saved model directory's weights and config (other files there, e.g. an
    earlier run's results, may be rewritten); a file and the ``config.json`` beside it (a
    ``.safetensors`` file's saved config, or another model's). A registered name or a Hub model
    has none."""
    from ..weights.hub import LOCAL_DIR_PREFIX, saved_paths

    if not source:
        return []
    path = source[len(LOCAL_DIR_PREFIX):] if source.startswith(LOCAL_DIR_PREFIX) else source
    if not os.path.exists(path):
        return []

    named = f"{flag} {source}"
    if os.path.isdir(path):
        return [(f"a file of the model {named}", str(f)) for f in saved_paths(path)]
    beside = [str(saved_paths(path)[1])] if path.endswith(".safetensors") else []
    beside.append(os.path.join(os.path.dirname(path), "config.json"))
    return [(named, path)] + [(f"the config.json beside {named}", f) for f in beside if os.path.isfile(f)]


def check_no_overwrite(inputs: Sequence[Labelled], outputs: Sequence[Labelled]) -> None:
    """Refuse (one line) an output that is one of the inputs, or two outputs that are one file:
    writing them would destroy the input or keep only the last output."""
    given = [(flag, path) for flag, path in outputs if path]
    for i, (flag, path) in enumerate(given):
        for what, source in inputs:
            if source and same_file(path, source):
                spelt_otherwise = "" if os.path.abspath(path) == os.path.abspath(source) else f" ({source})"
                fail(f"{flag} {path}: is {what}{spelt_otherwise}; writing it would destroy the input: give another "
                     "output name")
        for other_flag, other in given[:i]:
            if same_file(path, other):
                fail(f"{other_flag} {other} and {flag} {path} are the same file: give each output its own name")


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_output(path: str, flag: str) -> Iterator[str]:
    """Yield a temporary path beside ``path`` that becomes ``path`` when the block succeeds
    (:func:`hrformer.atomic.atomic_paths`: never a part, umask mode, symlinks written through);
    a file error is one line naming ``flag``."""
    with user_errors(f"{flag} {path}"), atomic_paths(path) as (tmp,):
        yield tmp


# --------------------------------------------------------------------------- JSON
def float32_precision(x: float) -> float:
    """``x`` with the shortest decimal that reads back as the same float32 (0.949999988079071 ->
    0.95): network outputs are float32, their further digits are noise."""
    if not math.isfinite(x) or abs(x) > _FLOAT32_MAX:
        return x
    single = struct.unpack("f", struct.pack("f", x))[0]
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        shorter = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shorter))[0] == single:
            return shorter
    return single


def _finite(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) or type(obj).__module__ == "numpy":  # arrays and scalars (np.float32)
        obj = obj.tolist()
    if isinstance(obj, float):
        return float32_precision(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Strict JSON (RFC 8259): NaN and +-Inf become ``null``, tensors lists, floats float32's digits."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False)


def write_json(obj: Any, path: str, flag: str = "--json") -> None:
    """``obj`` as strict JSON (:func:`to_json`) into ``path`` atomically, saying so; a failure is a
    user error."""
    text = to_json(obj) + "\n"
    with atomic_output(path, flag) as tmp, user_errors(f"{flag} {path}"):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"wrote {path}")


def save_picture(picture: Any, path: str, flag: str) -> None:
    """A PIL image into ``path`` atomically (the format from the extension), saying so."""
    with atomic_output(path, flag) as tmp, user_errors(f"{flag} {path}"):
        picture.save(tmp)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- images
def read_image(path: str) -> torch.Tensor:
    """The image file as :func:`hrformer.image.load_image` reads it, (3, H, W) float32 in [0, 1];
    its refusals (not an image, truncated or corrupt, over Pillow's decompression-bomb limit) are
    one-line errors naming the file."""
    from ..image import load_image

    with user_errors(f"IMAGE {path}", needed_for="reading the image"):
        try:
            return load_image(path)
        except OSError as e:  # a file system's errors carry an errno; Pillow's parsers' (a cut header) none
            if e.errno is not None or isinstance(e, HRFormerError):
                raise
            raise InputError(f"not a readable image: {e}") from e


__all__ = [
    "atomic_output", "check_no_overwrite", "check_output", "float32_precision", "model_files", "read_image",
    "same_file", "save_picture", "to_json", "write_json",
]

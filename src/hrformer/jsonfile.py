"""Reading the JSON files users hand the package (detections, annotations, results)."""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import InputError
from .weights.files import PathLike

__all__ = ["read_json"]


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """The JSON document at ``path``; a missing, unreadable or malformed file, or one nested too deeply
    to parse, is one :class:`~hrformer.InputError` naming it as ``what``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such {what}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except RecursionError as e:
        raise InputError(f"{path}: JSON nested too deeply to be a {what}") from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a readable {what} ({e})") from e

"""Writing files so that a failure never leaves a part: every file the package writes (saved
models, the command line's outputs) goes through :func:`atomic_paths`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, List, Union

__all__ = ["atomic_paths", "umask_mode"]

PathLike = Union[str, "os.PathLike[str]"]


def umask_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` gives a new file."""
    mask = os.umask(0)  # reading the umask means setting it; restored at once
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_paths(*targets: PathLike) -> Iterator[List[str]]:
    """Yield one temporary path beside each target (same suffix, so writers that pick the format
    from it still do). When the block succeeds, all of them are renamed onto their targets, only
    after every one was written: readers and a failed write see the old files (or none), never a
    part or a mix. New files get the umask's mode (``mkstemp`` would leave 0600); a symlink is
    written through. When the block fails, the temporary files are removed."""
    resolved = [os.path.realpath(t) for t in targets]
    temps: List[str] = []
    try:
        for target in resolved:
            fd, tmp = tempfile.mkstemp(prefix=".hrformer-", suffix=Path(target).suffix, dir=os.path.dirname(target))
            os.close(fd)
            temps.append(tmp)
        yield temps
        mode = umask_mode()
        for tmp, target in zip(temps, resolved):
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # gone after a successful replace

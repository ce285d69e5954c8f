"""The ``hrformer`` command line: ``info`` (default), ``list``, ``convert``, ``export``, ``pose``,
``segment``, ``classify``; one module per command, one model resolver (:mod:`.resolve`), one error
policy (:mod:`.errors`: a user's mistake is one ``error: ...`` line on stderr and exit status 2),
one way to read and write files (:mod:`.files`: no output over an input, atomic writes)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import NoReturn, Optional, Sequence

from .. import __version__
from . import classify, convert, evaluate, export, info, pose, segment
from . import list as list_command
from .errors import EXIT_USER_ERROR, UserError, command_advice, out_of_memory

# What a shell reports for a tool a closed pipe stopped (SIGPIPE), e.g. ``hrformer info | head -2``.
EXIT_BROKEN_PIPE = 128 + getattr(signal, "SIGPIPE", 13)
# Each command sets these with ``set_defaults``: how it takes weights (for advice) and its way out
# of running out of memory.
DEFAULT_WEIGHTS_USAGE = "--model {name} --weights {file}"
DEFAULT_MEMORY_ADVICE = "use a smaller input, or another --device"


class _Parser(argparse.ArgumentParser):
    """argparse with the error policy: a usage mistake is one ``error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each sets ``func``, which runs it and returns the exit status)."""
    parser = _Parser(prog="hrformer", description="High-Resolution Transformer models")
    parser.add_argument("--version", action="version", version=f"hrformer {__version__}")
    sub = parser.add_subparsers(dest="command")
    for command in (info, list_command, convert, export, pose, segment, classify, evaluate):
        command.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``hrformer ARGS`` (``argv``; default ``sys.argv[1:]``); returns the exit status."""
    argv = [*(sys.argv[1:] if argv is None else argv)]
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["info", *argv]
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "head", None) == "none":
            args.head = None
        try:
            with out_of_memory(getattr(args, "memory_advice", DEFAULT_MEMORY_ADVICE)):
                status = args.func(args)
        except UserError as e:
            message = command_advice(str(e), getattr(args, "weights_usage", DEFAULT_WEIGHTS_USAGE),
                                     options=vars(args))
            print(f"error: {message}", file=sys.stderr)
            status = EXIT_USER_ERROR
        sys.stdout.flush()  # here, so that a closed pipe is seen here rather than at exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """The reader went away: stop quietly, as Unix tools do. What is still buffered goes to
    /dev/null, so that Python's flush at exit does not report the broken pipe again (Python docs,
    "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (captured, replaced)
        pass


__all__ = ["build_parser", "main"]

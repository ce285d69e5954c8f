"""The ``hrformer`` command line: ``info`` (default), ``list``, ``convert``, ``export``, ``pose``,
``segment``; one module per command, one model resolver (:mod:`.resolve`), one error policy
(:mod:`.errors`: a user's mistake is one ``error: ...`` line on stderr and exit status 2)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Optional, Sequence

from .. import __version__
from . import convert, export, info, pose, segment
from . import list as list_command
from .errors import EXIT_USER_ERROR, UserError


class _Parser(argparse.ArgumentParser):
    """argparse with the error policy: a usage mistake is one ``error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (each sets ``func``, which runs it and returns the exit status)."""
    parser = _Parser(prog="hrformer", description="High-Resolution Transformer models")
    parser.add_argument("--version", action="version", version=f"hrformer {__version__}")
    sub = parser.add_subparsers(dest="command")
    for command in (info, list_command, convert, export, pose, segment):
        command.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``hrformer ARGS`` (``argv``; default ``sys.argv[1:]``); returns the exit status."""
    argv = [*(sys.argv[1:] if argv is None else argv)]
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv = ["info", *argv]
    args = build_parser().parse_args(argv)
    if getattr(args, "head", None) == "none":
        args.head = None
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


__all__ = ["build_parser", "main"]

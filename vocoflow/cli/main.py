"""The ``vocoflow`` command: one sub-command per module in :mod:`vocoflow.cli`.

Each command module defines ``register(subparsers)`` which adds its parser and sets
``func=callable(args) -> int`` as the default. Commands return an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules (under vocoflow.cli) that provide commands; every one must import.
COMMAND_MODULES = [
    "vocoflow.cli.demo",
    "vocoflow.cli.data",
    "vocoflow.cli.bench",
    "vocoflow.cli.decode",
    "vocoflow.cli.evaluate",
    "vocoflow.cli.train",
    "vocoflow.cli.distill",
    "vocoflow.cli.images",
    "vocoflow.cli.export",
    "vocoflow.cli.interop",
    "vocoflow.cli.vi",
    "vocoflow.cli.stego",
]


class CLIError(Exception):
    """An error meant for the user: printed without a traceback, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _version() -> str:
    """The installed distribution's version (``pip install -e .`` / ``make install``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vocoflow")
    except PackageNotFoundError:
        return "(not installed: run from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vocoflow", description="Flow-based neural vocoders: recipes, vocoding, benchmarks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"vocoflow {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"vocoflow {args.command}: error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``seqprob`` command: a thin layer over library calls, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules of this package; each defines ``register(subparsers)`` which adds its
# parser and sets ``func`` (called with the parsed arguments, returns an exit code).
COMMANDS = ("info", "demo", "hmm", "generate", "forecast", "distill")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqprob", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"seqprob.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"seqprob {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

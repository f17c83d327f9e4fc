"""The ``seqprob`` command: a thin layer over library calls, one module per subcommand.

Exit codes: 0 success, 2 a usage or input error (one line on stderr, no traceback), 1 a bug
(Python's traceback). :func:`user_error` decides which is which.
"""

from __future__ import annotations

import argparse
import dis
import importlib
import importlib.metadata
import re
import sys

import seqprob

# Subcommand modules of this package; each defines ``register(subparsers)`` which adds its
# parser and sets ``func`` (called with the parsed arguments, returns an exit code).
COMMANDS = ("info", "demo", "hmm", "generate", "forecast", "distill")
EXIT_USAGE = 2
_RAISE = dis.opmap["RAISE_VARARGS"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's help ends with its default when it has one
    (not for flags, nor for options whose absence means "not used")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == [] or \
            default is argparse.SUPPRESS
        if not action.option_strings or unset or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose subcommand parsers share :class:`HelpFormatter` and its
    one-line errors."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        """One line on stderr and exit 2 (argparse would print the whole usage first)."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="seqprob", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {seqprob.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"seqprob.cli.{name}").register(subparsers)
    return parser


def _raised_by_seqprob(err: BaseException) -> bool:
    """Whether ``err`` came from a ``raise`` statement in a seqprob module: the library's
    input validation (which names the argument), as opposed to an error that Python or
    another library raised while seqprob code ran (a bug, unless caught and re-raised)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    if module.split(".")[0] != "seqprob":
        return False
    return tb.tb_frame.f_code.co_code[tb.tb_lasti] == _RAISE


def _extra_of(module: str) -> str | None:
    """The optional extra of seqprob that installs ``module``, read from the package metadata
    (pyproject.toml's optional-dependencies), or None."""
    wanted = re.sub(r"[-_.]+", "-", module).lower()
    for requirement in importlib.metadata.requires("seqprob") or []:
        match = re.match(r"([A-Za-z0-9._-]+).*extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if match and re.sub(r"[-_.]+", "-", match[1]).lower() == wanted:
            return match[2]
    return None


def user_error(err: BaseException) -> str | None:
    """The one-line message for an error caused by the user's input or environment, or None
    for a bug (which keeps its traceback).

    User errors are: a ValueError, TypeError, ImportError or OSError raised on purpose by
    seqprob (see :func:`_raised_by_seqprob`); the file system refusing a path the user named
    (an OSError carrying a file name); a missing third-party module (an optional dependency).
    """
    if isinstance(err, ModuleNotFoundError) and err.name and err.name.split(".")[0] != "seqprob":
        try:
            extra = _extra_of(err.name.split(".")[0])
        except importlib.metadata.PackageNotFoundError:
            extra = None
        hint = f"pip install 'seqprob[{extra}]'" if extra else "a dependency is not installed"
        message = f"{err} ({hint})"
    elif isinstance(err, OSError) and err.filename is not None:
        message = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, ValueError | TypeError | ImportError | OSError) and \
            _raised_by_seqprob(err):
        message = str(err)
    else:
        return None
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already reported
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    command = " ".join(filter(None, ("seqprob", args.command, getattr(args, "action", None))))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        message = user_error(err)
        if message is None:
            raise
        print(f"{command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())

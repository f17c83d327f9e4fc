"""Files named on the command line: checked when the arguments are parsed, read with errors
that name the file, written atomically (:func:`seqprob.core.persist.atomic_path`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from seqprob.core.persist import atomic_path


def input_file(value: str) -> Path:
    """``type=`` for an existing file to read (argparse reports a missing one, exit 2)."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no file at {value!r}")
    return path


def output_file(value: str) -> Path:
    """``type=`` for a file to write: not a directory, in a folder that exists; checked
    before any work starts."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a directory, expected a file path")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {str(path.parent)!r} to write {value!r} in")
    return path


def read_csv(path: Path, option: str = "input"):
    """A DataFrame from a CSV file with a header row; a malformed or empty file is a
    ``ValueError`` naming ``option`` and the file."""
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{option}: {str(path)!r} is not a readable CSV file: "
                         f"{' '.join(str(err).split())}") from None


@contextlib.contextmanager
def text_output(path: Path | None) -> Iterator[TextIO]:
    """Standard output for ``None``, else ``path`` opened for text, replaced atomically when
    the block succeeds."""
    if path is None:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle

"""Build the API reference from the docstrings into ``build/docs`` (``make docs``).

Every module of the package is documented (pdoc alone stops at a package's ``__all__``); any
warning pdoc raises (an annotation it cannot resolve, a module that fails to import) fails the
build, so the reference cannot rot silently.

    python docs/build_api.py [--output build/docs]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import warnings
from pathlib import Path

import pdoc

import seqprob


def module_names() -> list[str]:
    """Every public module of seqprob (``pkgutil``; pdoc alone stops at ``__all__``)."""
    return ["seqprob", *(info.name for info in pkgutil.walk_packages(seqprob.__path__, "seqprob.")
                         if not info.name.rpartition(".")[2].startswith("_"))]


def named_tuples(modules: list[str]) -> list[str]:
    """The dotted names of the ``typing.NamedTuple`` classes defined in ``modules``."""
    found = []
    for name in modules:
        for attr, value in vars(importlib.import_module(name)).items():
            if (isinstance(value, type) and issubclass(value, tuple) and hasattr(value, "_fields")
                    and value.__module__ == name):
                found.append(f"{name}.{attr}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("build/docs"))
    args = parser.parse_args()
    modules = module_names()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # a package's spec already adds the submodules pdoc finds; naming them again is fine
        warnings.filterwarnings("ignore", message="The module specification .* has already "
                                "been added", category=UserWarning)
        # typing.NamedTuple builds __init__ in a namespace of its own, where pdoc cannot resolve
        # postponed annotations; the fields are still documented with their types
        for name in named_tuples(modules):
            warnings.filterwarnings("ignore", message=f"Error parsing type annotation .* for "
                                    f"{re.escape(name)}\\.__init__", category=UserWarning)
        pdoc.pdoc(*modules, output_directory=args.output)
    print(f"API reference written to {args.output / 'index.html'}")


if __name__ == "__main__":
    main()

"""Saving and loading: one safetensors file whose header carries a JSON config.

A checkpoint is a single ``.safetensors`` file: the tensors, plus string metadata
``seqprob_format`` (the format version), ``kind`` (what wrote it) and ``config`` (JSON).
One file means one atomic rename: a write goes to a temporary file in the same folder,
is flushed to disk, then replaces the target. Loading parses the header and the raw
tensor bytes only; nothing is ever unpickled.

A file names its class by ``kind``; :func:`load` resolves it against the classes registered
with ``@register`` and nothing else (no module named by a file is ever imported). A config is
checked before anything is allocated: its keys must be the constructor's arguments, the
constructor (which validates types and ranges) first runs on the ``meta`` device, and the
shapes and dtypes it would allocate must equal the file's tensors, which hold no NaN.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

FORMAT_VERSION = 1
T = TypeVar("T", bound="Persistable")
_KINDS: dict[str, type[Persistable]] = {}
# The packages whose import registers model classes; :func:`load` imports the one a kind
# names (a fixed choice made here, never a name taken from a file).
_MODEL_PACKAGES = ("seqprob.hmm", "seqprob.ssm", "seqprob.forecasting")


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor], *, kind: str,
                    config: dict[str, Any]) -> Path:
    """Write ``tensors`` and a JSON-serializable ``config`` atomically to ``path``."""
    path = Path(path)
    try:
        config_json = json.dumps(config, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"config: expected JSON-serializable values, got {err}") from None
    metadata = {"seqprob_format": str(FORMAT_VERSION), "kind": kind, "config": config_json}
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(contiguous, tmp, metadata=metadata)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format
    from it still do); when the block succeeds, flush it to disk and rename it onto ``path``,
    else delete it. Readers see the old file or the whole new one, never a partial write."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "expected a file path, got a directory", str(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)  # mkstemp made the file private: give it the mode open() would
        os.umask(umask)
        tmp.chmod(path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, *, kind: str | None = None
                    ) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """Read a checkpoint: ``(tensors, config, kind)``; ``kind`` given means it must match."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no checkpoint file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"path: {str(path)!r} is not a readable seqprob checkpoint "
                         f"(truncated or not safetensors): {err}") from None
    version = metadata.get("seqprob_format")
    if version is None:
        raise ValueError(f"path: {str(path)!r} is a safetensors file without seqprob metadata")
    if version != str(FORMAT_VERSION):
        raise ValueError(f"path: {str(path)!r} has checkpoint format version {version}; this "
                         f"seqprob reads version {FORMAT_VERSION}")
    found = metadata.get("kind", "")
    if kind is not None and found != kind:
        raise ValueError(f"path: expected a checkpoint of kind {kind!r}, got {found!r}")
    try:
        config = json.loads(metadata.get("config", "{}"))
    except json.JSONDecodeError as err:
        raise ValueError(f"path: {str(path)!r} has a config that is not JSON: {err}") from None
    if not isinstance(config, dict):
        raise ValueError(f"path: {str(path)!r} has a config that is a "
                         f"{type(config).__name__}, expected a JSON object")
    return tensors, config, found


def check_config(cls: type, config: dict[str, Any]) -> None:
    """Raise unless every key of ``config`` is a keyword argument of ``cls.__init__``."""
    accepted = {name for name, p in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ValueError(f"config: {cls.__name__} takes no argument(s) {unknown} "
                         f"(accepted: {sorted(accepted)})")


def check_tensors(expected: dict[str, Tensor], tensors: dict[str, Tensor]) -> None:
    """Raise unless ``tensors`` has exactly the names, shapes and dtypes of ``expected`` and
    holds no NaN."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(f"tensors: the checkpoint's tensors do not match its config "
                         f"(missing {missing}, unexpected {extra})")
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ValueError(f"tensors: {name!r} has shape {tuple(got.shape)} {got.dtype}; "
                             f"its config asks for {tuple(want.shape)} {want.dtype}")
        if got.is_floating_point() and bool(torch.isnan(got).any()):
            raise ValueError(f"tensors: {name!r} holds NaN; a parameter is never NaN")


class Persistable(nn.Module):
    """Mixin for modules rebuilt from a JSON config plus their ``state_dict``.

    Subclasses implement ``get_config()`` returning the keyword arguments of ``__init__``
    and are registered with ``@register`` so that :func:`load` finds the class by kind.
    """

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must define get_config()")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config and the parameters and buffers to ``path`` atomically."""
        return save_checkpoint(path, self.state_dict(), kind=kind_of(type(self)),
                               config=self.get_config())

    @classmethod
    def load(cls: type[T], path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
             ) -> T:
        """Rebuild a module saved by :meth:`save`."""
        tensors, config, _ = load_checkpoint(path, kind=kind_of(cls))
        return cls.from_checkpoint(tensors, config).to(map_location)

    @classmethod
    def from_checkpoint(cls: type[T], tensors: dict[str, Tensor], config: dict[str, Any]) -> T:
        """Build from ``config`` and fill parameters and buffers from ``tensors``; the config
        is checked on the ``meta`` device (nothing allocated) against the tensors first."""
        check_config(cls, config)
        with torch.device("meta"):
            shell = cls(**config)
        check_tensors(shell.state_dict(), tensors)
        model = cls(**config)
        model.load_state_dict(tensors)
        return model


def kind_of(cls: type) -> str:
    """The checkpoint kind of a class: its dotted import path."""
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` loadable by :func:`load` from its kind."""
    _KINDS[kind_of(cls)] = cls
    return cls


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Persistable:
    """Load any registered :class:`Persistable` from its checkpoint, whatever its class."""
    tensors, config, kind = load_checkpoint(path)
    for package in _MODEL_PACKAGES:
        if kind not in _KINDS and kind.startswith(package + "."):
            importlib.import_module(package)  # one of the fixed packages: registers its classes
    if kind not in _KINDS:
        raise ValueError(f"path: checkpoint kind {kind!r} is not a registered seqprob model")
    return _KINDS[kind].from_checkpoint(tensors, config).to(map_location)

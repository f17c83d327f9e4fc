"""Input checks whose errors name the argument, what was expected and what came."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

Dim = int | str | None


def describe(x: Any) -> str:
    """A short description of a value for error messages: type, shape and dtype."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype} on {x.device}"
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:200]


def check_tensor(x: Any, name: str) -> Tensor:
    """Refuse anything that is not a torch tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {describe(x)}")
    return x


def check_shape(x: Tensor, name: str, spec: Sequence[Dim],
                dims: dict[str, int] | None = None) -> Tensor:
    """Check ``x.shape`` against ``spec`` and bind symbolic dimensions in ``dims``.

    ``spec`` entries are ints (exact size), strings (a symbol: the first tensor that uses it
    binds it, later ones must agree) or ``None`` (any size). Passing the same ``dims`` to
    several calls checks that tensors agree with each other.
    """
    check_tensor(x, name)
    dims = {} if dims is None else dims
    if x.dim() != len(spec):
        raise ValueError(f"{name}: expected {len(spec)} dimensions {_format(spec, dims)}, "
                         f"got shape {tuple(x.shape)}")
    for size, want in zip(x.shape, spec, strict=True):
        expected = dims.setdefault(want, int(size)) if isinstance(want, str) else want
        if expected is not None and expected != size:
            raise ValueError(f"{name}: expected shape {_format(spec, dims)}, "
                             f"got {tuple(x.shape)}")
    return x


def _format(spec: Sequence[Dim], dims: Mapping[str, int]) -> str:
    parts = []
    for want in spec:
        if want is None:
            parts.append("*")
        elif isinstance(want, str):
            parts.append(f"{want}={dims[want]}" if want in dims else want)
        else:
            parts.append(str(want))
    return "(" + ", ".join(parts) + ")"


def check_dtype(x: Tensor, name: str, allowed: Iterable[torch.dtype]) -> Tensor:
    """Refuse a tensor whose dtype is not in ``allowed``."""
    allowed = tuple(allowed)
    if x.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"{name}: expected dtype in ({names}), got {x.dtype}")
    return x


def check_finite(x: Tensor, name: str) -> Tensor:
    """Refuse NaN or infinite entries, naming the first bad position."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name}: expected finite values, got {x[first].item()} at index "
                         f"{first} ({int(bad.sum())} non-finite entries)")
    return x


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """An integer (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return int(value)


def check_float(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within the interval given by the bounds and openness flags."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    value = float(value)
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not np.isfinite(value) or not (lo_ok and hi_ok):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name}: expected a value in {left}{lo}, {hi}{right}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def check_lengths(lengths: Any, total: int, name: str = "lengths") -> np.ndarray:
    """hmmlearn-style lengths: positive integers that sum to ``total``; ``None`` means one."""
    if lengths is None:
        return np.array([total], dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected a 1-D sequence of integers, got {describe(arr)}")
    if arr.size == 0 or (arr <= 0).any():
        raise ValueError(f"{name}: expected positive entries, got {arr.tolist()[:20]}")
    if int(arr.sum()) != total:
        raise ValueError(f"{name}: expected entries summing to {total} (the number of "
                         f"samples), got a sum of {int(arr.sum())}")
    return arr.astype(np.int64)

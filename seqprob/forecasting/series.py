"""Series in the types users bring (numpy, pandas wide or long, xarray) and back.

:func:`as_series` validates any accepted input and returns a :class:`Series`: the values as a
``(time, channels)`` float64 array, a regular time index, the channel names and enough about
the input's type to hand results back in that type (:meth:`Series.wrap`,
:meth:`Series.wrap_quantiles`, :meth:`Series.wrap_samples`) on a time index continued at the
input's frequency (:meth:`Series.future_index`).

Accepted inputs:

- ``numpy``: 1-D ``(time,)`` or 2-D ``(time, channels)``; the index is ``0, 1, ...``.
- ``pandas.Series`` / wide ``pandas.DataFrame`` (one column per channel) with a
  ``DatetimeIndex`` or an evenly spaced integer index.
- long ``pandas.DataFrame`` with columns ``unique_id, ds, y`` (one channel per ``unique_id``,
  all on the same timestamps).
- ``xarray.DataArray`` with a ``time`` dimension (1-D, or 2-D with one other dimension), and
  ``xarray.Dataset`` whose variables are 1-D over ``time`` (one channel per variable).
- a deterministic darts ``TimeSeries`` (one channel per component; ``seqprob[darts]``):
  forecasts come back as a ``TimeSeries``, samples as a stochastic one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from seqprob.core.validation import describe

KINDS = ("numpy1d", "numpy", "pandas_series", "pandas_wide", "pandas_long", "xarray_da",
         "xarray_ds", "darts")
LONG_COLUMNS = ("unique_id", "ds", "y")


@dataclasses.dataclass(frozen=True)
class Series:
    """A validated series.

    values : array of shape (time, channels), float64.
    index : regular ``DatetimeIndex`` (with ``freq``) or ``RangeIndex``, length ``time``.
    columns : channel names, length ``channels``.
    kind : one of :data:`KINDS`, the type results are returned in.
    name : the Series/DataArray name; ``channel_dim`` the DataArray's second dimension.
    """

    values: np.ndarray
    index: pd.Index
    columns: tuple[str, ...]
    kind: str
    name: Any = None
    time_dim: str = "time"
    channel_dim: str = "channel"

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    def __len__(self) -> int:
        return self.values.shape[0]

    def slice(self, start: int, stop: int) -> Series:
        """Rows ``[start, stop)``."""
        return dataclasses.replace(self, values=self.values[start:stop],
                                   index=self.index[start:stop])

    def extend(self, values: np.ndarray) -> Series:
        """This series followed by the rows ``values (n, channels)``, the index continued."""
        index = self.index.append(self.future_index(len(values)))
        if isinstance(self.index, pd.DatetimeIndex):
            index = pd.DatetimeIndex(index, freq=self.index.freq)
        elif isinstance(self.index, pd.RangeIndex):
            index = pd.RangeIndex(index[0], index[-1] + self.index.step, self.index.step,
                                  name=self.index.name)
        return dataclasses.replace(self, values=np.concatenate([self.values, values]),
                                   index=index)

    def future_index(self, horizon: int, offset: int = 0) -> pd.Index:
        """The ``horizon`` time stamps after row ``len(self) - 1 + offset``."""
        return continue_index(self.index, horizon, offset)

    def wrap(self, values: np.ndarray, index: pd.Index) -> Any:
        """Point values ``(len(index), channels)`` in the input's type."""
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "numpy1d":
            return values[:, 0]
        if self.kind == "numpy":
            return values
        if self.kind == "pandas_series":
            return pd.Series(values[:, 0], index=index, name=self.name)
        if self.kind == "pandas_wide":
            return pd.DataFrame(values, index=index, columns=list(self.columns))
        if self.kind == "pandas_long":
            return _long_frame(values[None], index, self.columns)
        if self.kind == "darts":
            return _darts_series(index, values, list(self.columns))
        return self._wrap_xarray(values, index, (), {})

    def wrap_quantiles(self, values: np.ndarray, index: pd.Index, quantiles: np.ndarray) -> Any:
        """Quantiles ``(len(index), channels, n_quantiles)`` in the input's type.

        numpy: ``(time, [channels,] quantiles)``; pandas wide/Series: columns
        ``(channel, quantile)``; long: one column ``q<level>`` per quantile; xarray: a
        ``quantile`` dimension last; darts: components ``<channel>_q<level>``.
        """
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "numpy1d":
            return values[:, 0]
        if self.kind == "numpy":
            return values
        if self.kind in ("pandas_series", "pandas_wide"):
            cols = pd.MultiIndex.from_product([list(self.columns), list(quantiles)],
                                              names=["channel", "quantile"])
            return pd.DataFrame(values.reshape(len(index), -1), index=index, columns=cols)
        if self.kind == "pandas_long":
            frame = _long_frame(np.moveaxis(values, -1, 0), index, self.columns, "q",
                                list(quantiles))
            return frame.pivot_table(index=["unique_id", "ds"], columns="q", values="y",
                                     sort=False).rename(columns=lambda q: f"q{q:g}"
                                                        ).reset_index().rename_axis(
                                                            columns=None)
        if self.kind == "darts":
            names = [f"{c}_q{q:g}" for c in self.columns for q in quantiles]
            return _darts_series(index, values.reshape(len(index), -1), names)
        return self._wrap_xarray(values, index, ("quantile",), {"quantile": list(quantiles)})

    def wrap_samples(self, values: np.ndarray, index: pd.Index) -> Any:
        """Samples ``(n_samples, len(index), channels)`` in the input's type.

        numpy: ``(samples, time, [channels])``; pandas: a long frame with a ``sample`` column
        (wide input: ``channel``; long input: ``unique_id``); xarray: a ``sample`` dimension
        first; darts: a stochastic ``TimeSeries``.
        """
        values = np.asarray(values, dtype=np.float64)
        if self.kind == "numpy1d":
            return values[..., 0]
        if self.kind == "numpy":
            return values
        if self.kind in ("pandas_series", "pandas_wide", "pandas_long"):
            frame = _long_frame(values, index, self.columns, "sample",
                                list(range(len(values))))
            if self.kind != "pandas_long":
                frame = frame.rename(columns={"unique_id": "channel", "ds": "time"})
            return frame
        moved = np.moveaxis(values, 0, -1)  # (time, channels, samples)
        if self.kind == "darts":
            return _darts_series(index, moved, list(self.columns))
        da = self._wrap_xarray(moved, index, ("sample",), {"sample": np.arange(len(values))})
        return da.transpose("sample", ...)

    def _wrap_xarray(self, values: np.ndarray, index: pd.Index, extra_dims: tuple[str, ...],
                     extra_coords: dict[str, Any]) -> Any:
        import xarray as xr

        coords = {self.time_dim: np.asarray(index), **extra_coords}
        if self.kind == "xarray_ds":
            return xr.Dataset({name: ((self.time_dim, *extra_dims), values[:, i])
                               for i, name in enumerate(self.columns)}, coords=coords)
        if self.channel_dim is None:
            return xr.DataArray(values[:, 0], dims=(self.time_dim, *extra_dims), coords=coords,
                                name=self.name)
        coords[self.channel_dim] = list(self.columns)
        return xr.DataArray(values, dims=(self.time_dim, self.channel_dim, *extra_dims),
                            coords=coords, name=self.name)


def _long_frame(values: np.ndarray, index: pd.Index, columns: tuple[str, ...],
                label: str | None = None, labels: list[Any] | None = None) -> pd.DataFrame:
    """Long frame from ``values (n_labels, time, channels)``: unique_id, ds, [label,] y."""
    n_lab, n_time, n_chan = values.shape
    frame = {"unique_id": np.repeat(np.asarray(columns, dtype=object), n_lab * n_time),
             "ds": np.tile(np.asarray(index), n_lab * n_chan)}
    if label is not None:
        frame[label] = np.tile(np.repeat(np.asarray(labels, dtype=object), n_time), n_chan)
    frame["y"] = np.moveaxis(values, 2, 0).reshape(-1)
    return pd.DataFrame(frame)


def _darts_series(index: pd.Index, values: np.ndarray, columns: list[str]) -> Any:
    """A darts ``TimeSeries`` of ``values (time, components[, samples])`` on ``index``."""
    from darts import TimeSeries

    return TimeSeries.from_times_and_values(index, values, columns=columns)


def _is_darts(y: Any) -> bool:
    return type(y).__name__ == "TimeSeries" and type(y).__module__.startswith("darts")


def _from_darts(y: Any, name: str) -> Series:
    if not y.is_deterministic:
        raise ValueError(f"{name}: expected a deterministic darts TimeSeries (one sample), got "
                         f"{y.n_samples} samples")
    values = _numeric(y.values(copy=True), name)
    return Series(values, _check_index(y.time_index, name),
                  tuple(str(c) for c in y.components), "darts")


def continue_index(index: pd.Index, horizon: int, offset: int = 0) -> pd.Index:
    """``horizon`` stamps following position ``len(index) - 1 + offset`` at the index's step."""
    if isinstance(index, pd.DatetimeIndex):
        start = index[-1] + (1 + offset) * index.freq
        return pd.date_range(start, periods=horizon, freq=index.freq, name=index.name)
    step = index.step if isinstance(index, pd.RangeIndex) else 1
    first = index[-1] + (1 + offset) * step
    return pd.RangeIndex(first, first + horizon * step, step, name=index.name)


def as_series(y: Any, name: str = "y", *, time_dim: str = "time", allow_nan: bool = False
              ) -> Series:
    """Validate ``y`` (any accepted type, see the module docstring) into a :class:`Series`.

    Raises ValueError for duplicated, unsorted or irregular time stamps, an unknown frequency,
    an empty series, or NaNs (positions named) unless ``allow_nan``; TypeError for other types.
    """
    if isinstance(y, Series):
        series = y
    elif isinstance(y, np.ndarray | list | tuple):
        series = _from_numpy(np.asarray(y), name)
    elif isinstance(y, pd.Series):
        values = _numeric(y.to_numpy()[:, None], name)
        series = Series(values, _check_index(y.index, name), (str(y.name or "y"),),
                        "pandas_series", name=y.name)
    elif isinstance(y, pd.DataFrame):
        series = _from_frame(y, name)
    elif _is_darts(y):
        series = _from_darts(y, name)
    else:
        series = _from_xarray(y, name, time_dim)
    if len(series) == 0:
        raise ValueError(f"{name}: expected at least one time step, got an empty series")
    if not allow_nan:
        check_no_nan(series.values, series.index, series.columns, name)
    return series


def _numeric(values: np.ndarray, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected numeric values, got {describe(values)}") from None


def _from_numpy(arr: np.ndarray, name: str) -> Series:
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D (time,) or 2-D (time, channels) array, got "
                         f"{describe(arr)}")
    if len(arr) == 0:
        raise ValueError(f"{name}: expected at least one time step, got an empty series")
    values = _numeric(arr.reshape(len(arr), -1), name)
    kind = "numpy1d" if arr.ndim == 1 else "numpy"
    columns = tuple(str(i) for i in range(values.shape[1]))
    return Series(values, pd.RangeIndex(len(values)), columns, kind)


def _from_frame(frame: pd.DataFrame, name: str) -> Series:
    if set(LONG_COLUMNS) <= set(frame.columns):
        return _from_long(frame, name)
    if {"ds", "y"} & set(frame.columns) and not isinstance(frame.index, pd.DatetimeIndex):
        raise ValueError(f"{name}: a long frame needs the columns {LONG_COLUMNS}, got "
                         f"{list(frame.columns)}")
    values = _numeric(frame.to_numpy(), name)
    return Series(values, _check_index(frame.index, name),
                  tuple(str(c) for c in frame.columns), "pandas_wide")


def _from_long(frame: pd.DataFrame, name: str) -> Series:
    dup = frame.duplicated(subset=["unique_id", "ds"])
    if dup.any():
        rows = frame.loc[dup, ["unique_id", "ds"]].head(5).to_dict("records")
        raise ValueError(f"{name}: duplicated (unique_id, ds) pairs, first {rows}")
    wide = frame.pivot(index="ds", columns="unique_id", values="y")
    counts = frame.groupby("unique_id").size()
    if (counts != len(wide)).any():
        short = counts[counts != len(wide)].head(5).to_dict()
        raise ValueError(f"{name}: every unique_id must have the same ds stamps ({len(wide)} "
                         f"distinct); rows per unique_id differ: {short}")
    wide.index = pd.DatetimeIndex(wide.index) if not _is_integer(wide.index) else wide.index
    values = _numeric(wide.to_numpy(), name)
    return Series(values, _check_index(wide.index, name), tuple(str(c) for c in wide.columns),
                  "pandas_long")


def _is_integer(index: pd.Index) -> bool:
    return pd.api.types.is_integer_dtype(index.dtype)


def _from_xarray(y: Any, name: str, time_dim: str) -> Series:
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a core dependency
        xr = None
    if xr is None or not isinstance(y, xr.DataArray | xr.Dataset):
        raise TypeError(f"{name}: expected a numpy array, pandas Series/DataFrame or xarray "
                        f"DataArray/Dataset, got {describe(y)}")
    if isinstance(y, xr.Dataset):
        return _from_dataset(y, name, time_dim)
    dims = y.dims
    dim = dims[0] if len(dims) == 1 else time_dim
    if dim not in dims or len(dims) > 2:
        raise ValueError(f"{name}: expected a DataArray with dimension {time_dim!r} (and at "
                         f"most one other), got dims {dims}")
    index = _check_index(y.indexes[dim] if dim in y.indexes else pd.RangeIndex(y.sizes[dim]),
                         name)
    if len(dims) == 1:
        return Series(_numeric(y.values[:, None], name), index, (str(y.name or "y"),),
                      "xarray_da", name=y.name, time_dim=dim, channel_dim=None)
    other = next(d for d in dims if d != dim)
    arr = y.transpose(dim, other)
    labels = (arr.indexes[other] if other in arr.indexes else range(arr.sizes[other]))
    return Series(_numeric(arr.values, name), index, tuple(str(c) for c in labels),
                  "xarray_da", name=y.name, time_dim=dim, channel_dim=other)


def _from_dataset(ds: Any, name: str, time_dim: str) -> Series:
    bad = {k: v.dims for k, v in ds.data_vars.items() if v.dims != (time_dim,)}
    if bad or not ds.data_vars:
        raise ValueError(f"{name}: expected Dataset variables that are 1-D over {time_dim!r}, "
                         f"got {bad or 'no variables'}")
    values = np.stack([_numeric(v.values, name) for v in ds.data_vars.values()], axis=1)
    index = ds.indexes[time_dim] if time_dim in ds.indexes else pd.RangeIndex(len(values))
    return Series(values, _check_index(index, name), tuple(str(k) for k in ds.data_vars),
                  "xarray_ds", time_dim=time_dim)


def _check_index(index: pd.Index, name: str) -> pd.Index:
    """A regular DatetimeIndex with ``freq`` set, or an evenly spaced integer RangeIndex."""
    if isinstance(index, pd.RangeIndex):
        return index
    if not isinstance(index, pd.DatetimeIndex) and not _is_integer(index):
        raise ValueError(f"{name}: expected a DatetimeIndex or an integer index for time, got "
                         f"{type(index).__name__} of dtype {index.dtype}")
    if index.has_duplicates:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{name}: duplicated time stamps {dup}")
    if not index.is_monotonic_increasing:
        steps = np.diff(index.to_numpy())
        pos = int(np.flatnonzero(steps < steps.dtype.type(0))[0]) + 1
        raise ValueError(f"{name}: time stamps must increase; position {pos} "
                         f"({index[pos]}) comes before its predecessor")
    if not isinstance(index, pd.DatetimeIndex):
        steps = np.diff(index.to_numpy())
        if len(steps) and (steps != steps[0]).any():
            pos = int(np.flatnonzero(steps != steps[0])[0]) + 1
            raise ValueError(f"{name}: irregular integer time stamps: step {steps[0]} then a "
                             f"gap before position {pos} ({index[pos]})")
        step = int(steps[0]) if len(steps) else 1
        return pd.RangeIndex(int(index[0]), int(index[-1]) + step, step, name=index.name)
    return _with_freq(index, name)


def _with_freq(index: pd.DatetimeIndex, name: str) -> pd.DatetimeIndex:
    if index.freq is not None:
        return index
    if len(index) < 3:
        raise ValueError(f"{name}: unknown frequency: {len(index)} time stamps cannot fix a "
                         f"frequency; pass at least 3 or a DatetimeIndex with freq set")
    inferred = pd.DatetimeIndex(index, freq="infer")
    if inferred.freq is None:
        steps = np.diff(index.to_numpy())  # timedelta64
        kinds, counts = np.unique(steps, return_counts=True)
        typical = kinds[counts.argmax()]
        pos = np.flatnonzero(steps != typical)[:5] + 1
        raise ValueError(f"{name}: irregular time stamps, unknown frequency: the usual step is "
                         f"{pd.Timedelta(typical)} but the step changes before positions "
                         f"{pos.tolist()} ({[str(index[p]) for p in pos]})")
    return inferred


def check_no_nan(values: np.ndarray, index: pd.Index, columns: tuple[str, ...], name: str
                 ) -> None:
    """Refuse NaN or infinite entries, naming the first positions (time stamp, channel)."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = [f"({index[r]}, {columns[c]!r})" for r, c in zip(rows[:5], cols[:5], strict=True)]
        raise ValueError(f"{name}: expected finite values; {int(bad.sum())} NaN/inf entries at "
                         f"(time, channel) {', '.join(where)}{' ...' if len(rows) > 5 else ''}"
                         f" (rows {rows[:5].tolist()}); this model does not handle missing "
                         f"values: fill or drop them first")

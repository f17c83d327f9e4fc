"""Panels in the Nixtla layout: long frames ``unique_id, ds, y`` of ragged series.

:class:`Panel` fits a clone of every model on every series, each on its own time stamps
(different starts, ends, lengths and even frequencies), on threads or dask
(:func:`~seqprob.forecasting.parallel.fit_many`). Outputs follow statsforecast: ``predict``
returns ``unique_id, ds, <model>`` plus ``<model>-lo-<l>``/``<model>-hi-<l>`` for each
``level`` (central interval coverage in percent); ``cross_validation`` runs
:meth:`~seqprob.forecasting.base.Forecaster.backtest` on the last ``n_windows`` windows of each
series and returns ``unique_id, ds, cutoff, y, <model>...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from seqprob.core.validation import check_int, describe
from seqprob.forecasting.base import Backtest, Forecaster
from seqprob.forecasting.metrics import (
    check_interval_levels,
    interval_bounds,
    interval_quantile_levels,
)
from seqprob.forecasting.parallel import _map, fit_many
from seqprob.forecasting.series import LONG_COLUMNS, as_series


def split_long(df: Any, name: str = "df") -> dict[Any, pd.Series]:
    """The series of a long frame ``unique_id, ds, y`` as ``unique_id -> pd.Series`` on ``ds``.

    Each series is validated on its own (regular stamps, no NaN, no duplicates).
    """
    if not isinstance(df, pd.DataFrame) or not set(LONG_COLUMNS) <= set(df.columns):
        raise TypeError(f"{name}: expected a long DataFrame with columns {LONG_COLUMNS}, got "
                        f"{describe(df) if not isinstance(df, pd.DataFrame) else list(df.columns)}")
    if df.empty:
        raise ValueError(f"{name}: expected at least one row, got an empty frame")
    out = {}
    for uid, group in df.groupby("unique_id", sort=True):
        series = pd.Series(group["y"].to_numpy(), index=pd.Index(group["ds"]), name="y")
        series = series.sort_index()
        as_series(series, f"{name}[unique_id={uid!r}]")  # regular, finite, no duplicates
        out[uid] = series
    return out


def _aliases(models: Any) -> dict[str, Forecaster]:
    """``alias -> model``: a mapping as given, or class names of a list (must be distinct)."""
    named = dict(models) if isinstance(models, Mapping) else {
        type(m).__name__: m for m in (models if isinstance(models, list | tuple) else [])}
    count = len(models) if isinstance(models, Mapping | list | tuple) else 0
    if not named or len(named) != count:
        raise ValueError(f"models: expected a non-empty list of forecasters of distinct classes "
                         f"or a mapping alias -> forecaster, got {describe(models)}")
    for alias, model in named.items():
        if not isinstance(model, Forecaster):
            raise TypeError(f"models: {alias!r} is not a seqprob Forecaster, got "
                            f"{describe(model)}")
    return named


class Panel:
    """Forecast every series of a long frame with every model (statsforecast-like).

    models : a list of forecasters (columns named after their classes) or a mapping
        alias -> forecaster. backend, n_workers, client : as in :func:`fit_many`.
    """

    def __init__(self, models: Any, *, backend: str = "auto", n_workers: int = 2,
                 client: Any = None):
        self.models = _aliases(models)
        self.backend = backend
        self.n_workers = n_workers
        self.client = client

    def _parallel(self) -> dict[str, Any]:
        return {"backend": self.backend, "n_workers": self.n_workers, "client": self.client,
                "processes": False}

    def fit(self, df: pd.DataFrame) -> Panel:
        """Fit a clone of each model on each series of ``df``; sets ``fitted_``."""
        series = split_long(df)
        self.fitted_ = {alias: fit_many(model, series, **self._parallel())
                        for alias, model in self.models.items()}
        return self

    def predict(self, h: int, level: Any = None) -> pd.DataFrame:
        """``h`` steps after each series' own end: ``unique_id, ds, <model>[, -lo-/-hi-]``."""
        if not hasattr(self, "fitted_"):
            raise RuntimeError("Panel: call fit(df) before predict")
        h = check_int(h, "h", minimum=1)
        levels = None if level is None else interval_quantile_levels(level)
        frames = []
        for uid in next(iter(self.fitted_.values())):
            columns = {}
            for alias, fitted in self.fitted_.items():
                model = fitted[uid]
                point = model.predict(h)
                columns[alias] = point.to_numpy()
                if levels is not None:
                    q = model.predict_quantiles(h, levels).to_numpy()  # (h, Q)
                    columns.update(_interval_columns(alias, q, levels, level))
            frames.append(pd.DataFrame({"unique_id": uid, "ds": point.index, **columns}))
        return pd.concat(frames, ignore_index=True)

    def forecast(self, df: pd.DataFrame, h: int, level: Any = None) -> pd.DataFrame:
        """``fit(df).predict(h, level)``."""
        return self.fit(df).predict(h, level)

    def cross_validation(self, df: pd.DataFrame, h: int, n_windows: int = 1,
                         step_size: int = 1, level: Any = None, refit: bool | int = True
                         ) -> pd.DataFrame:
        """Backtests on the last ``n_windows`` windows of ``h`` rows, ``step_size`` apart.

        Window cutoffs are each series' own (its last ``h + (n_windows - 1) * step_size`` rows
        are forecast); ``refit`` as in ``backtest``. Returns ``unique_id, ds, cutoff, y,
        <model>[, <model>-lo-<l>, <model>-hi-<l>]``.
        """
        h = check_int(h, "h", minimum=1)
        n_windows = check_int(n_windows, "n_windows", minimum=1)
        step_size = check_int(step_size, "step_size", minimum=1)
        if level is not None:
            check_interval_levels(level)
        series = split_long(df)
        kwargs = {"h": h, "n_windows": n_windows, "step_size": step_size, "level": level,
                  "refit": refit}
        results = {alias: _map(_last_windows, series, (model, kwargs), **self._parallel())
                   for alias, model in self.models.items()}
        frames = []
        for uid, y in series.items():
            first = results[next(iter(results))][uid]
            starts = len(y) - h - step_size * np.arange(n_windows)[::-1]
            stamps = np.concatenate([y.index[t: t + h] for t in starts])
            frame = {"unique_id": uid, "ds": stamps,
                     "cutoff": np.repeat(first.metrics["cutoff"].to_numpy(), h),
                     "y": first.truth.reshape(-1)}
            for alias, per_series in results.items():
                bt = per_series[uid]
                frame[alias] = bt.predictions.reshape(-1)
                if level is not None:
                    q = bt.quantiles.reshape(-1, len(bt.quantile_levels))
                    frame.update(_interval_columns(alias, q, bt.quantile_levels, level))
            frames.append(pd.DataFrame(frame))
        return pd.concat(frames, ignore_index=True)


def _last_windows(model: Forecaster, y: pd.Series, kwargs: dict[str, Any]) -> Backtest:
    """The backtest of ``model`` on the last ``n_windows`` windows of ``y`` (one series)."""
    h, n_windows, step_size = kwargs["h"], kwargs["n_windows"], kwargs["step_size"]
    start = len(y) - h - (n_windows - 1) * step_size
    if start < 1:
        raise ValueError(f"n_windows: a series of {len(y)} rows has no room for {n_windows} "
                         f"windows of h={h} rows {step_size} apart")
    return model.backtest(y, start=start, horizon=h, stride=step_size, refit=kwargs["refit"],
                          level=kwargs["level"])


def _interval_columns(alias: str, quantiles: np.ndarray, levels: np.ndarray, level: Any
                      ) -> dict[str, np.ndarray]:
    """``<alias>-lo-<l>`` and ``<alias>-hi-<l>`` columns from ``quantiles (n, Q)``."""
    out = {}
    for lev in check_interval_levels(level):
        lower, upper = interval_bounds(quantiles, levels, lev)
        out[f"{alias}-lo-{lev:g}"] = lower
        out[f"{alias}-hi-{lev:g}"] = upper
    return out

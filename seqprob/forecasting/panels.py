"""Panels in the Nixtla layout: long frames ``unique_id, ds, y`` of ragged series.

:class:`Panel` fits a clone of every model on every series, each on its own time stamps
(different starts, ends, lengths and even frequencies), on threads or dask
(:func:`~seqprob.forecasting.parallel.fit_many`). Outputs follow statsforecast: ``predict``
returns ``unique_id, ds, <model>`` plus ``<model>-lo-<l>``/``<model>-hi-<l>`` for each
``level`` (central interval coverage in percent); ``cross_validation`` runs
:meth:`~seqprob.forecasting.base.Forecaster.backtest` on the last ``n_windows`` windows of each
series and returns ``unique_id, ds, cutoff, y, <model>...``. Any other column of the frame is
an exogenous variable (as in statsforecast): every model gets it as covariates ``X``, and
``predict``/``forecast`` then need its future values in ``X_df`` (``unique_id, ds, <columns>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from seqprob.core.validation import check_int, describe
from seqprob.forecasting.base import Backtest, Forecaster
from seqprob.forecasting.metrics import (
    check_interval_levels,
    interval_bounds,
    interval_quantile_levels,
)
from seqprob.forecasting.parallel import _map
from seqprob.forecasting.series import LONG_COLUMNS, as_series


def split_long(df: Any, name: str = "df") -> dict[Any, pd.DataFrame]:
    """The series of a long frame as ``unique_id -> DataFrame`` on ``ds`` (sorted): ``y`` and
    every column other than ``unique_id`` and ``ds`` (covariates).

    Each series is validated on its own (regular stamps, no NaN, no duplicates).
    """
    frames = _by_series(df, name, LONG_COLUMNS)
    for uid, frame in frames.items():
        as_series(frame, f"{name}[unique_id={uid!r}]")  # regular, finite, no duplicates
    return frames


def _by_series(df: Any, name: str, needed: tuple[str, ...]) -> dict[Any, pd.DataFrame]:
    """``unique_id -> rows on ds`` (sorted) of a long frame with at least ``needed``."""
    if not isinstance(df, pd.DataFrame) or not set(needed) <= set(df.columns):
        raise TypeError(f"{name}: expected a long DataFrame with columns {needed}, got "
                        f"{describe(df) if not isinstance(df, pd.DataFrame) else list(df.columns)}")
    if df.empty:
        raise ValueError(f"{name}: expected at least one row, got an empty frame")
    return {uid: group.drop(columns="unique_id").set_index("ds").sort_index()
            for uid, group in df.groupby("unique_id", sort=True)}


def _exogenous(df: pd.DataFrame) -> list[str]:
    """The columns of a long frame that are covariates: all but ``unique_id, ds, y``."""
    return [c for c in df.columns if c not in LONG_COLUMNS]


def _items(frames: dict[Any, pd.DataFrame], exog: list[str]
           ) -> dict[Any, tuple[pd.Series, pd.DataFrame | None]]:
    """``unique_id -> (y, covariates or None)`` for the workers."""
    return {uid: (f["y"], f[exog] if exog else None) for uid, f in frames.items()}


def _fit_item(model: Forecaster, item: tuple[pd.Series, pd.DataFrame | None]) -> Forecaster:
    return clone(model).fit(*item)


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
        """Fit a clone of each model on each series of ``df`` (other columns: covariates);
        sets ``fitted_`` and ``exogenous_`` (the covariate columns)."""
        self.exogenous_ = _exogenous(df)
        items = _items(split_long(df), self.exogenous_)
        self.fitted_ = {alias: _map(_fit_item, items, (model,), **self._parallel())
                        for alias, model in self.models.items()}
        return self

    def predict(self, h: int, level: Any = None, X_df: Any = None) -> pd.DataFrame:
        """``h`` steps after each series' own end: ``unique_id, ds, <model>[, -lo-/-hi-]``;
        ``X_df``: the covariates' future rows (``unique_id, ds, <columns>``) when fitted
        with covariates."""
        if not hasattr(self, "fitted_"):
            raise RuntimeError("Panel: call fit(df) before predict")
        h = check_int(h, "h", minimum=1)
        levels = None if level is None else interval_quantile_levels(level)
        future = self._future_covariates(X_df)
        frames = []
        for uid in next(iter(self.fitted_.values())):
            columns = {}
            for alias, fitted in self.fitted_.items():
                model = fitted[uid]
                x = None if future is None else _future_rows(future, uid, model, h)
                point = model.predict(h, X=x)
                columns[alias] = point.to_numpy()
                if levels is not None:
                    q = model.predict_quantiles(h, levels, X=x).to_numpy()  # (h, Q)
                    columns.update(_interval_columns(alias, q, levels, level))
            frames.append(pd.DataFrame({"unique_id": uid, "ds": point.index, **columns}))
        return pd.concat(frames, ignore_index=True)

    def _future_covariates(self, X_df: Any) -> dict[Any, pd.DataFrame] | None:
        """``X_df`` split by series, checked against the covariates of ``fit``."""
        if not self.exogenous_:
            if X_df is not None:
                raise ValueError("X_df: the panel was fitted without covariate columns; pass "
                                 "X_df=None")
            return None
        if X_df is None:
            raise ValueError(f"X_df: the panel was fitted with covariates {self.exogenous_}, so "
                             f"predict needs their future values: a long frame unique_id, ds, "
                             f"{', '.join(self.exogenous_)}; got None")
        frames = _by_series(X_df, "X_df", ("unique_id", "ds"))
        columns = [c for c in X_df.columns if c not in ("unique_id", "ds")]
        if set(columns) != set(self.exogenous_):
            raise ValueError(f"X_df: expected the covariate columns {self.exogenous_} of fit, "
                             f"got {columns}")
        return {uid: frame[self.exogenous_] for uid, frame in frames.items()}

    def forecast(self, df: pd.DataFrame, h: int, level: Any = None, X_df: Any = None
                 ) -> pd.DataFrame:
        """``fit(df).predict(h, level, X_df)``."""
        return self.fit(df).predict(h, level, X_df)

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
        items = _items(split_long(df), _exogenous(df))
        kwargs = {"h": h, "n_windows": n_windows, "step_size": step_size, "level": level,
                  "refit": refit}
        results = {alias: _map(_last_windows, items, (model, kwargs), **self._parallel())
                   for alias, model in self.models.items()}
        frames = []
        for uid, (y, _) in items.items():
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


def _future_rows(future: dict[Any, pd.DataFrame], uid: Any, model: Forecaster, h: int
                 ) -> pd.DataFrame:
    """Series ``uid``'s covariates for the ``h`` stamps after its end (all must be there)."""
    stamps = model.series_.future_index(h)
    rows = future.get(uid)
    missing = stamps if rows is None else stamps.difference(rows.index)
    if len(missing):
        raise ValueError(f"X_df: unique_id={uid!r} needs covariates for its next {h} stamps "
                         f"{stamps[0]} .. {stamps[-1]}; missing {list(missing[:5])}")
    return rows.loc[stamps]


def _last_windows(model: Forecaster, item: tuple[pd.Series, pd.DataFrame | None],
                  kwargs: dict[str, Any]) -> Backtest:
    """The backtest of ``model`` on the last ``n_windows`` windows of one series ``(y, X)``."""
    y, X = item
    h, n_windows, step_size = kwargs["h"], kwargs["n_windows"], kwargs["step_size"]
    start = len(y) - h - (n_windows - 1) * step_size
    if start < 1:
        raise ValueError(f"n_windows: a series of {len(y)} rows has no room for {n_windows} "
                         f"windows of h={h} rows {step_size} apart")
    return model.backtest(y, start=start, horizon=h, stride=step_size, refit=kwargs["refit"],
                          X=X, level=kwargs["level"])


def _interval_columns(alias: str, quantiles: np.ndarray, levels: np.ndarray, level: Any
                      ) -> dict[str, np.ndarray]:
    """``<alias>-lo-<l>`` and ``<alias>-hi-<l>`` columns from ``quantiles (n, Q)``."""
    out = {}
    for lev in check_interval_levels(level):
        lower, upper = interval_bounds(quantiles, levels, lev)
        out[f"{alias}-lo-{lev:g}"] = lower
        out[f"{alias}-hi-{lev:g}"] = upper
    return out

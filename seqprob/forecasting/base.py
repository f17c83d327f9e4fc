"""The Forecaster API shared by every model: fit, predict, quantiles, samples, backtests, I/O.

A subclass declares its parameters' constraints in ``_parameter_constraints`` (scikit-learn's
mechanism, checked once when ``fit`` or ``backtest`` starts; ``_check_params`` adds the checks
that relate several parameters) and supplies the math on arrays ``(time, channels)``:

- ``_fit(y, X, y_val)`` learns from ``y``, a :class:`~seqprob.forecasting.series.Series`
  (values ``(time, channels)`` with their time index; ``X``: covariates ``(time, k)`` or None;
  ``y_val``: a validation Series or None);
- ``_forecast(history, horizon, X_hist, X_future) -> (horizon, channels)`` forecasts after any
  ``history`` with the fitted parameters (that is what ``backtest(refit=False)`` uses);
- optionally ``_forecast_quantiles`` ``-> (horizon, channels, levels)`` and
  ``_forecast_samples`` ``-> (n_samples, horizon, channels)``;
- ``_get_state() -> (tensors, json)`` and ``_set_state(tensors, json)`` for save/load.

The base class validates parameters and inputs, converts types
(:mod:`seqprob.forecasting.series`) and continues the time index; subclasses trust both.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from seqprob.core.persist import check_config, kind_of, load_checkpoint, save_checkpoint
from seqprob.core.validation import check_int, describe
from seqprob.forecasting.metrics import (
    POINT_METRICS,
    interval_quantile_levels,
    interval_scores,
    mase,
)
from seqprob.forecasting.series import Series, as_series, check_no_nan

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass
class Backtest:
    """Result of :meth:`Forecaster.backtest`.

    metrics : DataFrame, one row per window (``window``, ``cutoff`` = last training stamp,
        ``refit``, one column per metric).
    forecasts : list of per-window forecasts in the input's type.
    predictions, truth : arrays of shape (windows, horizon, channels).
    model : the last fitted clone (with ``refit=False`` the only one, fit on the rows before
        the first window).
    quantiles : with ``level``, array (windows, horizon, channels, Q) at ``quantile_levels``.
    """

    metrics: pd.DataFrame
    forecasts: list[Any]
    predictions: np.ndarray
    truth: np.ndarray
    model: Forecaster | None = None
    quantiles: np.ndarray | None = None
    quantile_levels: np.ndarray | None = None

    def summary(self) -> pd.Series:
        """Every metric averaged over the windows."""
        return self.metrics.drop(columns=["window", "cutoff", "refit"]).mean()


class Forecaster(BaseEstimator):
    """Base class; see the module docstring for what subclasses implement."""

    supports_covariates = False
    covariates_unsupported = "its forecasts depend on the series alone"  # the reason, if so
    supports_samples = False
    supports_quantiles = False  # True: predict_quantiles takes any level without samples
    supports_update = True  # False: the fitted state is tied to the fitted series
    _parameter_constraints: ClassVar[dict] = {}

    # ---- fitting -----------------------------------------------------------------------
    def fit(self, y: Any, X: Any = None, *, y_val: Any = None) -> Forecaster:
        """Learn from ``y`` (numpy, pandas wide/long, xarray), optional covariates ``X``.

        ``y_val``: a validation continuation (same channels) for models that early-stop;
        others ignore it.
        """
        self._check_all_params()
        series = as_series(y, "y")
        covariates = self._covariates(X, len(series), "X")
        val = None
        if y_val is not None:
            val = as_series(y_val, "y_val")
            if val.n_channels != series.n_channels:
                raise ValueError(f"y_val: expected {series.n_channels} channels like y, got "
                                 f"{val.n_channels}")
        self._check_history(len(series), self._min_fit_history())
        self._fit(series, covariates, val)
        self.series_ = series
        self.X_ = covariates
        return self

    def _check_all_params(self) -> None:
        """The declared constraints, then the checks across parameters."""
        self._validate_params()
        self._check_params()

    def _check_params(self) -> None:
        """Checks that relate several parameters (subclasses; the declared ones passed)."""

    def _check_history(self, n_time: int, need: int | None = None) -> None:
        need = self._min_history() if need is None else need
        if n_time < need:
            raise ValueError(f"y: {type(self).__name__} needs a series of at least {need} time "
                             f"steps, got {n_time}")

    def _min_history(self) -> int:
        """Rows a forecast needs after fitting (a context)."""
        return 1

    def _min_fit_history(self) -> int:
        """Rows ``fit`` needs."""
        return self._min_history()

    def _covariates(self, X: Any, n_time: int, name: str) -> np.ndarray | None:
        if X is None:
            return None
        if not self.supports_covariates:
            raise TypeError(f"{name}: {type(self).__name__} takes no covariates "
                            f"({self.covariates_unsupported}); pass {name}=None, or use a "
                            f"model that does (ARIMA, AutoARIMA, NeuralForecaster)")
        arr = as_series(X, name).values
        if len(arr) != n_time:
            raise ValueError(f"{name}: expected covariates for {n_time} time steps, got "
                             f"{len(arr)}")
        if getattr(self, "X_", None) is not None and arr.shape[1] != self.X_.shape[1]:
            raise ValueError(f"{name}: expected {self.X_.shape[1]} covariate columns as in fit, "
                             f"got {arr.shape[1]}")
        return arr

    def _future_covariates(self, X: Any, horizon: int, name: str = "X") -> np.ndarray | None:
        if self.X_ is None and X is None:
            return None
        if self.X_ is not None and X is None:
            raise ValueError(f"{name}: the model was fitted with covariates, so it needs their "
                             f"future values: expected an array of {horizon} rows, got None")
        if self.X_ is None:
            raise TypeError(f"{name}: the model was fitted without covariates; pass "
                            f"{name}=None")
        return self._covariates(X, horizon, name)

    # ---- new observations --------------------------------------------------------------
    def update(self, y_new: Any, X_new: Any = None) -> Forecaster:
        """Append the observations ``y_new`` that follow the series; the parameters are kept.

        Later forecasts condition on the longer history with the fitted parameters (no refit,
        as in ``backtest(refit=False)``). pandas/xarray stamps must continue the series' index;
        ``X_new``: the covariates of those rows when the model was fitted with covariates.
        """
        check_is_fitted(self, "series_")
        if not self.supports_update:
            raise TypeError(f"y_new: {type(self).__name__}'s fitted state belongs to the series "
                            f"it was fitted on; fit it again on the longer series")
        new = as_series(y_new, "y_new")
        if new.n_channels != self.series_.n_channels:
            raise ValueError(f"y_new: expected {self.series_.n_channels} channels like the "
                             f"fitted series, got {new.n_channels}")
        expected = self.series_.future_index(len(new))
        if not new.kind.startswith("numpy") and not new.index.equals(expected):
            raise ValueError(f"y_new: expected time stamps continuing the series from "
                             f"{expected[0]} (step {expected[-1] - expected[0]} over "
                             f"{len(new)} rows), got {new.index[0]} .. {new.index[-1]}")
        covariates = self._future_covariates(X_new, len(new), "X_new")
        self.series_ = self.series_.extend(new.values)
        if covariates is not None:
            self.X_ = np.concatenate([self.X_, covariates])
        self._update()
        return self

    def _update(self) -> None:
        """Refresh any state derived from ``series_`` after :meth:`update` (default: none)."""

    # ---- prediction --------------------------------------------------------------------
    def _prepare(self, horizon: int, X: Any, y: Any
                 ) -> tuple[int, np.ndarray | None, Series, np.ndarray | None]:
        """``(horizon, future X, history series, history X)``: the fitted series or ``y``."""
        check_is_fitted(self, "series_")
        horizon = check_int(horizon, "horizon", minimum=1)
        future = self._future_covariates(X, horizon)
        if y is None:
            return horizon, future, self.series_, self.X_
        if self.X_ is not None:
            raise ValueError("y: the model was fitted with covariates, whose past values a new "
                             "series does not carry; fit on it or use update()")
        series = as_series(y, "y")
        if series.n_channels != self.series_.n_channels:
            raise ValueError(f"y: expected {self.series_.n_channels} channels like the fitted "
                             f"series, got {series.n_channels}")
        self._check_history(len(series))
        return horizon, future, series, None

    def predict(self, horizon: int, X: Any = None, *, y: Any = None) -> Any:
        """Point forecast of the next ``horizon`` steps in the input's type.

        ``y``: forecast after this series instead of the fitted one, with the fitted
        parameters (a global model applied to a new series); the result is in ``y``'s type.
        """
        horizon, future, series, past = self._prepare(horizon, X, y)
        values = self._forecast(series.values, horizon, past, future)
        return series.wrap(values, series.future_index(horizon))

    def predict_quantiles(self, horizon: int, quantiles=(0.1, 0.5, 0.9), X: Any = None, *,
                          y: Any = None) -> Any:
        """Forecast quantiles at ``quantiles`` (levels in (0, 1)) in the input's type."""
        horizon, future, series, past = self._prepare(horizon, X, y)
        levels = check_levels(quantiles)
        values = self._forecast_quantiles(series.values, horizon, levels, past, future)
        return series.wrap_quantiles(values, series.future_index(horizon), levels)

    def predict_samples(self, horizon: int, n_samples: int = 100, X: Any = None, *,
                        random_state: int | None = None, y: Any = None) -> Any:
        """``n_samples`` joint sample paths of the next ``horizon`` steps (input's type)."""
        if not self.supports_samples:
            raise NotImplementedError(f"{type(self).__name__} does not draw samples; use "
                                      f"predict_quantiles")
        horizon, future, series, past = self._prepare(horizon, X, y)
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        rng = np.random.default_rng(random_state)
        values = self._forecast_samples(series.values, horizon, n_samples, rng, past, future)
        return series.wrap_samples(values, series.future_index(horizon))

    def predict_windows(self, contexts: np.ndarray, horizon: int) -> np.ndarray:
        """Forecasts ``(n, horizon, channels)`` after each context ``(n, length, channels)``.

        The fitted parameters are reused for every context (no refit); models with a fixed
        lookback use each context's last ``lookback`` rows.
        """
        contexts = self._check_contexts(contexts)
        if self.X_ is not None:
            raise ValueError("contexts: the model was fitted with covariates, which bare "
                             "contexts do not carry; use predict(horizon, X=...) or "
                             "backtest(y, ..., X=...)")
        return self._forecast_batch(contexts, check_int(horizon, "horizon", minimum=1))

    def _check_contexts(self, contexts: Any) -> np.ndarray:
        """Contexts ``(n, length, n_channels)`` as float64, long enough and finite."""
        check_is_fitted(self, "series_")
        contexts = np.asarray(contexts, dtype=np.float64)
        if contexts.ndim != 3 or contexts.shape[2] != self.series_.n_channels:
            raise ValueError(f"contexts: expected (n, length, {self.series_.n_channels}), got "
                             f"shape {contexts.shape}")
        self._check_history(contexts.shape[1])
        check_finite_history(contexts.reshape(-1, contexts.shape[2]), "contexts")
        return contexts

    def _forecast_batch(self, contexts: np.ndarray, horizon: int) -> np.ndarray:
        return np.stack([self._forecast(c, horizon, None, None) for c in contexts])

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future) -> np.ndarray:
        if not self.supports_samples:
            raise NotImplementedError(f"{type(self).__name__} has no predictive distribution")
        samples = self._forecast_samples(history, horizon, 1000, np.random.default_rng(0),
                                         X_hist, X_future)
        return np.moveaxis(np.quantile(samples, levels, axis=0), 0, -1)

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future
                          ) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not draw samples")

    # ---- backtesting -------------------------------------------------------------------
    def backtest(self, y: Any, start: int, horizon: int, stride: int = 1,
                 refit: bool | int = False, X: Any = None,
                 metrics: Mapping[str, MetricFn] | None = None,
                 season_length: int = 1, level: Any = None) -> Backtest:
        """Rolling-origin evaluation over ``y``; ``self`` is left untouched (clones are fit).

        Windows forecast rows ``[t, t + horizon)`` from rows ``[0, t)`` for
        ``t = start, start + stride, ...`` while ``t + horizon <= len(y)``. ``refit=False``:
        fit once on ``[0, start)``, then condition on each longer history with the same
        parameters; ``True``: refit at every window; an int ``k``: refit every ``k`` windows.
        ``metrics``: name -> fn(y_true, y_pred) (default MSE, MAE, RMSE, sMAPE), plus MASE
        scaled by the in-sample ``season_length`` naive error. ``level``: central interval
        coverages in percent (e.g. ``[80, 95]``) for a model with a predictive distribution;
        adds ``coverage-<l>``, ``width-<l>`` and ``crps`` (from 20 quantiles) per window.
        """
        self._check_all_params()
        series = as_series(y, "y")
        covariates = self._covariates(X, len(series), "X")
        origins = backtest_origins(len(series), start, horizon, stride, self._min_history())
        every = _refit_every(refit, len(origins))
        metrics = dict(POINT_METRICS if metrics is None else metrics)
        levels = None if level is None else self._interval_levels(level)
        model, rows, preds, quants = None, [], [], []
        for i, t in enumerate(origins):
            refitted = model is None or i % every == 0
            hist_x = None if covariates is None else covariates[:t]
            if refitted:
                model = clone(self).fit(series.slice(0, t), hist_x)
            fut_x = None if covariates is None else covariates[t: t + horizon]
            pred = model._forecast(series.values[:t], horizon, hist_x, fut_x)
            truth = series.values[t: t + horizon]
            scores = {name: fn(truth, pred) for name, fn in metrics.items()}
            if t > season_length:
                scores["mase"] = mase(truth, pred, series.values[:t], season_length)
            if levels is not None:
                quants.append(model._forecast_quantiles(series.values[:t], horizon, levels,
                                                        hist_x, fut_x))
                scores.update(interval_scores(truth, quants[-1], levels, level))
            rows.append({"window": i, "cutoff": series.index[t - 1], "refit": refitted,
                         **scores})
            preds.append(pred)
        predictions = np.stack(preds)
        truth = np.stack([series.values[t: t + horizon] for t in origins])
        forecasts = [series.wrap(p, series.index[t: t + horizon])
                     for p, t in zip(predictions, origins, strict=True)]
        return Backtest(pd.DataFrame(rows), forecasts, predictions, truth, model,
                        np.stack(quants) if quants else None, levels)

    def _interval_levels(self, level: Any) -> np.ndarray:
        """Quantile levels a probabilistic backtest asks for (see ``backtest``'s ``level``)."""
        if not (self.supports_quantiles or self.supports_samples):
            raise ValueError(f"level: {type(self).__name__} has no predictive distribution at "
                             f"any level (it forecasts points or fixed quantiles); pass "
                             f"level=None")
        return interval_quantile_levels(level)

    # ---- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write parameters, fitted state and the training series as one safetensors file."""
        check_is_fitted(self, "series_")
        tensors, state = self._get_state()
        tensors = {f"state.{k}": v for k, v in tensors.items()}
        tensors["series.values"] = torch.tensor(self.series_.values)
        if self.X_ is not None:
            tensors["series.X"] = torch.tensor(self.X_)
        config = {"params": self._json_params(), "state": state,
                  "series": _series_meta(self.series_)}
        return save_checkpoint(path, tensors, kind=kind_of(type(self)), config=config)

    def _json_params(self) -> dict[str, Any]:
        params = self.get_params(deep=False)
        for key, value in params.items():
            if callable(value):
                raise TypeError(f"{key}: a callable cannot be saved; use a registered name, got "
                                f"{describe(value)}")
        return params

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
             ) -> Forecaster:
        """Rebuild a forecaster written by :meth:`save` (never unpickles)."""
        tensors, config, _ = load_checkpoint(path, kind=kind_of(cls))
        return cls.from_checkpoint(tensors, config).to(map_location)

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], config: dict[str, Any]
                        ) -> Forecaster:
        params = config.get("params")
        if not isinstance(params, dict):
            raise ValueError(f"path: the config's 'params' is not an object: {params!r}")
        check_config(cls, params)
        model = cls(**_restore_params(params))
        model.series_ = _series_from_meta(config["series"], tensors["series.values"].numpy())
        model.X_ = tensors["series.X"].numpy() if "series.X" in tensors else None
        state = {k.removeprefix("state."): v for k, v in tensors.items()
                 if k.startswith("state.")}
        model._set_state(state, config["state"])
        return model

    def to(self, device: str | torch.device) -> Forecaster:
        """Move any network to ``device`` (a no-op for models without one)."""
        return self

    def _get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def _set_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        self._fit(self.series_, self.X_, None)


def renamed_horizon(output_length: int, deprecated: dict[str, Any], owner: str) -> int:
    """``output_length``, or the value of the deprecated ``horizon=`` keyword (FutureWarning).

    ``deprecated``: the constructor's extra keywords; any other than ``horizon`` is refused.
    """
    unknown = sorted(set(deprecated) - {"horizon"})
    if unknown:
        raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {unknown[0]!r}")
    if "horizon" not in deprecated:
        return output_length
    warnings.warn(f"{owner}(horizon=...) is deprecated and will be removed: the trained output "
                  f"length is now called output_length (predict(horizon) still takes the "
                  f"number of steps to forecast)", FutureWarning, stacklevel=3)
    return deprecated["horizon"]


def _restore_params(params: dict[str, Any]) -> dict[str, Any]:
    # JSON turns tuples into lists; estimators compare params, so give tuples back.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def _series_meta(series: Series) -> dict[str, Any]:
    index = series.index
    if isinstance(index, pd.DatetimeIndex):
        idx = {"type": "datetime", "start": index[0].isoformat(), "freq": index.freqstr,
               "name": index.name}
    else:
        idx = {"type": "range", "start": int(index.start), "step": int(index.step),
               "name": index.name}
    return {"index": idx, "columns": list(series.columns), "kind": series.kind,
            "name": series.name, "time_dim": series.time_dim,
            "channel_dim": series.channel_dim}


def _series_from_meta(meta: dict[str, Any], values: np.ndarray) -> Series:
    idx = meta["index"]
    if idx["type"] == "datetime":
        index = pd.date_range(idx["start"], periods=len(values), freq=idx["freq"],
                              name=idx["name"])
    else:
        index = pd.RangeIndex(idx["start"], idx["start"] + len(values) * idx["step"],
                              idx["step"], name=idx["name"])
    return Series(values, index, tuple(meta["columns"]), meta["kind"], name=meta["name"],
                  time_dim=meta["time_dim"], channel_dim=meta["channel_dim"])


def check_levels(quantiles: Any) -> np.ndarray:
    """Quantile levels as a 1-D float array, each in (0, 1)."""
    levels = np.asarray(quantiles, dtype=np.float64).reshape(-1)
    if levels.size == 0 or not np.all((levels > 0) & (levels < 1)):
        raise ValueError(f"quantiles: expected levels strictly between 0 and 1, got "
                         f"{np.asarray(quantiles).tolist()}")
    return levels


def backtest_origins(n_time: int, start: int, horizon: int, stride: int, min_history: int
                     ) -> np.ndarray:
    """First forecast rows ``start, start + stride, ...`` with ``origin + horizon <= n_time``."""
    check_int(horizon, "horizon", minimum=1)
    check_int(stride, "stride", minimum=1)
    check_int(start, "start", minimum=min_history, maximum=n_time - horizon)
    return np.arange(start, n_time - horizon + 1, stride)


def _refit_every(refit: bool | int, n_windows: int) -> int:
    if isinstance(refit, bool):
        return 1 if refit else n_windows + 1
    return check_int(refit, "refit", minimum=1)


def check_finite_history(values: np.ndarray, name: str = "history") -> None:
    """Refuse NaNs in a raw history array (positions named)."""
    check_no_nan(values, pd.RangeIndex(len(values)),
                 tuple(str(i) for i in range(values.shape[1])), name)

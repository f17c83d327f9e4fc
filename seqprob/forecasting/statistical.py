"""statsmodels baselines behind the Forecaster API: ARIMA/SARIMAX, ETS and Theta.

Each channel gets its own univariate model. Saving stores the fitted parameters; loading
re-runs the filter/smoother with those parameters on the stored series (no optimization,
nothing unpickled). ``backtest(refit=False)`` conditions on each new history with the fitted
parameters (ARIMA: ``results.apply``; ETS: ``model.smooth(params)``). Theta has no separate
parameters to hold fixed — its fit is closed form — so Theta re-estimates on each history.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.utils._param_validation import Interval, StrOptions

from seqprob.core.persist import register
from seqprob.forecasting.base import Forecaster


def _gaussian_quantiles(mean: np.ndarray, std: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """``(H, C, Q)`` quantiles of independent normals ``mean, std (H, C)``."""
    return mean[..., None] + std[..., None] * stats.norm.ppf(levels)


def _constant_channels(history: np.ndarray) -> np.ndarray:
    """``(C,)`` mask of the channels of ``history (T, C)`` that never change."""
    return np.ptp(history, axis=0) == 0


class _PerChannel(Forecaster):
    """Fits one statsmodels results object per channel; subclasses build the model."""

    def _model(self, endog: np.ndarray, exog: np.ndarray | None):
        raise NotImplementedError

    def _fit(self, y, X, y_val):
        with warnings.catch_warnings(record=True):  # statsmodels re-enables its own
            warnings.simplefilter("ignore")
            self.results_ = [self._model(y.values[:, c], X).fit(**self._fit_kwargs())
                             for c in range(y.n_channels)]

    def _fit_kwargs(self) -> dict[str, Any]:
        return {}

    def _results(self, history: np.ndarray, X_hist: np.ndarray | None, refresh: bool = False
                 ) -> list[Any]:
        """Results conditioned on ``history`` with the fitted parameters (``refresh``: even
        when ``history`` is the series they were last conditioned on)."""
        if history is self.series_.values and not refresh:
            return self.results_
        with warnings.catch_warnings(record=True):  # statsmodels re-enables its own
            warnings.simplefilter("ignore")
            return [self._condition(res, history[:, c], X_hist)
                    for c, res in enumerate(self.results_)]

    def _condition(self, results, endog, exog):
        raise NotImplementedError

    def _update(self):
        self.results_ = self._results(self.series_.values, self.X_, refresh=True)

    def _get_state(self):
        return {f"params.{c}": torch.tensor(np.asarray(r.params, dtype=np.float64))
                for c, r in enumerate(self.results_)}, {}

    def _set_state(self, tensors, state):
        values, X = self.series_.values, self.X_
        with warnings.catch_warnings(record=True):  # statsmodels re-enables its own
            warnings.simplefilter("ignore")
            self.results_ = [self._from_params(values[:, c], X,
                                               tensors[f"params.{c}"].numpy())
                             for c in range(values.shape[1])]

    def _from_params(self, endog, exog, params):
        raise NotImplementedError


@register
class ARIMA(_PerChannel):
    """(S)ARIMA(X) by state-space maximum likelihood (``statsmodels.tsa.arima.model.ARIMA``).

    order : (p, d, q); seasonal_order : (P, D, Q, s); trend : None, "n", "c", "t", "ct".
    Covariates ``X`` enter as regressors (SARIMAX); predict then needs their future values.
    """

    supports_covariates = True
    supports_samples = True
    _parameter_constraints: ClassVar[dict] = {
        "order": ["array-like"],
        "seasonal_order": ["array-like"],
        "trend": [StrOptions({"n", "c", "t", "ct"}), "array-like", None],
    }

    def __init__(self, order=(1, 0, 0), *, seasonal_order=(0, 0, 0, 0), trend=None):
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend

    def _check_params(self) -> None:
        for name, size in (("order", 3), ("seasonal_order", 4)):
            value = getattr(self, name)
            if len(value) != size or not all(isinstance(v, Integral) and v >= 0
                                             for v in value):
                raise ValueError(f"{name}: expected {size} non-negative ints, got {value!r}")

    def _model(self, endog, exog):
        from statsmodels.tsa.arima.model import ARIMA as SMARIMA

        return SMARIMA(endog, exog=exog, order=tuple(self.order),
                       seasonal_order=tuple(self.seasonal_order), trend=self.trend)

    def _min_history(self) -> int:
        p, d, q = self.order
        big_p, big_d, big_q, s = self.seasonal_order
        return max(p + d + q, s * (big_p + big_d + big_q)) + 2

    def _condition(self, results, endog, exog):
        return results.apply(endog, exog=exog)

    def _from_params(self, endog, exog, params):
        return self._model(endog, exog).filter(params)

    def _forecast(self, history, horizon, X_hist, X_future):
        res = self._results(history, X_hist)
        return np.stack([r.forecast(horizon, exog=X_future) for r in res], axis=1)

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        res = self._results(history, X_hist)
        preds = [r.get_forecast(horizon, exog=X_future) for r in res]
        mean = np.stack([np.asarray(p.predicted_mean) for p in preds], axis=1)
        std = np.stack([np.asarray(p.se_mean) for p in preds], axis=1)
        return _gaussian_quantiles(mean, std, levels)

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future):
        res = self._results(history, X_hist)
        sims = [np.asarray(r.simulate(horizon, anchor="end", repetitions=n_samples,
                                      exog=X_future, rng=rng)).reshape(horizon, n_samples)
                for r in res]
        return np.stack(sims, axis=2).transpose(1, 0, 2)  # (S, H, C)


@register
class ETS(_PerChannel):
    """Exponential smoothing state-space model (``statsmodels ... ets.ETSModel``).

    error : "add" | "mul"; trend, seasonal : None | "add" | "mul"; damped_trend;
    seasonal_periods : the season length when ``seasonal`` is set.
    """

    supports_samples = True
    covariates_unsupported = "statsmodels' ETSModel has no exogenous regressors"
    _parameter_constraints: ClassVar[dict] = {
        "error": [StrOptions({"add", "mul"})],
        "trend": [StrOptions({"add", "mul"}), None],
        "damped_trend": ["boolean"],
        "seasonal": [StrOptions({"add", "mul"}), None],
        "seasonal_periods": [Interval(Integral, 2, None, closed="left"), None],
    }

    def __init__(self, *, error="add", trend=None, damped_trend=False, seasonal=None,
                 seasonal_periods=None):
        self.error = error
        self.trend = trend
        self.damped_trend = damped_trend
        self.seasonal = seasonal
        self.seasonal_periods = seasonal_periods

    def _check_params(self) -> None:
        if self.seasonal is not None and self.seasonal_periods is None:
            raise ValueError(f"seasonal_periods: expected the season length (an int >= 2) "
                             f"with seasonal={self.seasonal!r}, got None")

    def _model(self, endog, exog):
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        # statsmodels' ETS prediction intervals need a pandas endog
        return ETSModel(pd.Series(endog), error=self.error, trend=self.trend,
                        damped_trend=self.damped_trend, seasonal=self.seasonal,
                        seasonal_periods=self.seasonal_periods)

    def _fit_kwargs(self):
        return {"disp": False}

    def _min_history(self) -> int:
        return 2 * (self.seasonal_periods or 1) + 2

    def _condition(self, results, endog, exog):
        return self._model(endog, None).smooth(results.params)

    def _from_params(self, endog, exog, params):
        return self._model(endog, None).smooth(params)

    def _forecast(self, history, horizon, X_hist, X_future):
        res = self._results(history, X_hist)
        return np.stack([np.asarray(r.forecast(horizon)) for r in res], axis=1)

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        res = self._results(history, X_hist)
        n = len(history)
        preds = [r.get_prediction(start=n, end=n + horizon - 1) for r in res]
        mean = np.stack([np.asarray(p.predicted_mean) for p in preds], axis=1)
        std = np.stack([np.sqrt(np.asarray(p.var_pred_mean)) for p in preds], axis=1)
        return _gaussian_quantiles(mean, std, levels)

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future):
        res = self._results(history, X_hist)
        sims = [np.asarray(r.simulate(horizon, anchor="end", repetitions=n_samples, rng=rng)
                           ).reshape(horizon, n_samples) for r in res]
        return np.stack(sims, axis=2).transpose(1, 0, 2)  # (S, H, C)


@register
class Theta(_PerChannel):
    """The Theta method (Assimakopoulos & Nikolopoulos 2000; statsmodels ``ThetaModel``).

    period : season length for the multiplicative deseasonalization (None: no
    deseasonalization); theta : the weight of the trend line (2 is the classic method).
    A constant channel is forecast as that constant with zero-width intervals (both theta
    lines of a constant are flat; statsmodels' smoothing fit breaks down on zero variance).
    """

    supports_quantiles = True
    covariates_unsupported = "statsmodels' ThetaModel has no exogenous regressors"
    _parameter_constraints: ClassVar[dict] = {
        "period": [Interval(Integral, 2, None, closed="left"), None],
        "theta": [Interval(Real, None, None, closed="neither")],
    }

    def __init__(self, *, period=None, theta=2.0):
        self.period = period
        self.theta = theta

    def _model(self, endog, exog):
        from statsmodels.tsa.forecasting.theta import ThetaModel

        if self.period is None:
            return ThetaModel(endog, deseasonalize=False)
        return ThetaModel(endog, period=self.period)

    def _min_history(self) -> int:
        return 2 * (self.period or 1) + 2

    def _condition(self, results, endog, exog):
        return self._model(endog, None).fit()

    def _get_state(self):
        return {}, {}  # closed-form fit: loading refits on the stored series

    def _set_state(self, tensors, state):
        self._fit(self.series_, self.X_, None)

    def _forecast(self, history, horizon, X_hist, X_future):
        res = self._results(history, X_hist)
        mean = np.stack([np.asarray(r.forecast(horizon, theta=self.theta)) for r in res],
                        axis=1)
        flat = _constant_channels(history)
        mean[:, flat] = history[-1, flat]
        return mean

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        res = self._results(history, X_hist)
        mean = self._forecast(history, horizon, X_hist, X_future)
        # the intervals are normal: recover the standard deviation from the 80% interval
        z = stats.norm.ppf(0.9)
        width = np.stack([np.asarray(r.prediction_intervals(horizon, theta=self.theta,
                                                            alpha=0.2)["upper"])
                          for r in res], axis=1) - mean
        width[:, _constant_channels(history)] = 0.0
        return _gaussian_quantiles(mean, width / z, levels)

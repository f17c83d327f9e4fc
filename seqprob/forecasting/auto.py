"""Automatic model selection by information criterion: AutoARIMA and AutoETS.

Each channel gets its own specification: every candidate is fitted by statsmodels (through
:class:`ARIMA`/:class:`ETS`) and the one with the lowest ``criterion`` (``"aicc"``, ``"aic"``
or ``"bic"``) is kept. AutoARIMA first picks the differencing order by repeated KPSS tests
(level stationarity at 5%, as Hyndman & Khandakar's auto.arima), then searches ``p <= max_p``,
``q <= max_q`` (with a constant when ``d = 0``, with and without drift when ``d = 1``).
AutoETS searches error, trend (none, additive, additive damped) and seasonality (none or
additive with ``seasonal_periods``; multiplicative forms only for positive series).
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from seqprob.core.persist import register
from seqprob.forecasting.base import Forecaster
from seqprob.forecasting.series import Series
from seqprob.forecasting.statistical import ARIMA, ETS, _PerChannel

CRITERIA = ("aicc", "aic", "bic")


class _Selected(Forecaster):
    """One fitted single-channel model per channel, chosen among ``_candidates``."""

    supports_samples = True
    supports_quantiles = True

    def _candidates(self, values: np.ndarray) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _make(self, spec: dict[str, Any]) -> _PerChannel:
        raise NotImplementedError

    def _fit(self, y, X, y_val):
        self.chosen_ = [self._select(_channel(y, c), X) for c in range(y.n_channels)]
        self.specs_ = [m.get_params() for m in self.chosen_]

    def _select(self, channel: Series, X: np.ndarray | None) -> _PerChannel:
        best, best_score = None, np.inf
        for spec in self._candidates(channel.values[:, 0]):
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("ignore")
                try:
                    model = self._make(spec).fit(channel, X)
                except (ValueError, np.linalg.LinAlgError):
                    continue  # a candidate statsmodels cannot estimate on this series
            score = float(getattr(model.results_[0], self.criterion))
            if np.isfinite(score) and score < best_score:
                best, best_score = model, score
        if best is None:
            raise ValueError(f"y: no candidate {type(self).__name__} specification could be "
                             f"estimated on channel {channel.columns[0]!r}")
        return best

    def _per_channel(self, method: str, history: np.ndarray, *args) -> list[np.ndarray]:
        return [getattr(m, method)(history[:, [c]], *args) for c, m in enumerate(self.chosen_)]

    def _forecast(self, history, horizon, X_hist, X_future):
        return np.concatenate(self._per_channel("_forecast", history, horizon, X_hist,
                                                X_future), axis=1)

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        return np.concatenate(self._per_channel("_forecast_quantiles", history, horizon,
                                                levels, X_hist, X_future), axis=1)

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future):
        return np.concatenate(self._per_channel("_forecast_samples", history, horizon,
                                                n_samples, rng, X_hist, X_future), axis=2)

    def _update(self):
        for c, model in enumerate(self.chosen_):
            model.series_ = _channel(self.series_, c)
            model.X_ = self.X_
            model._update()

    def _get_state(self):
        tensors = {f"params.{c}": torch.tensor(np.asarray(m.results_[0].params, np.float64))
                   for c, m in enumerate(self.chosen_)}
        return tensors, {"specs": [{k: list(v) if isinstance(v, tuple) else v
                                    for k, v in spec.items()} for spec in self.specs_]}

    def _set_state(self, tensors, state):
        self.specs_ = [{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
                       for spec in state["specs"]]
        self.chosen_ = []
        for c, spec in enumerate(self.specs_):
            model = self._make(spec)
            model.series_, model.X_ = _channel(self.series_, c), self.X_
            model._set_state({"params.0": tensors[f"params.{c}"]}, {})
            self.chosen_.append(model)


def _channel(series: Series, c: int) -> Series:
    return dataclasses.replace(series, values=series.values[:, [c]],
                               columns=(series.columns[c],))


@register
class AutoARIMA(_Selected):
    """ARIMA with the orders chosen per channel (see the module docstring).

    max_p, max_q : largest AR and MA orders searched; max_d : most differences;
    criterion : "aicc" | "aic" | "bic". Covariates ``X`` enter every candidate (SARIMAX).
    Fitted: ``specs_`` (the chosen ARIMA parameters per channel), ``chosen_`` (the models).
    """

    supports_covariates = True
    _parameter_constraints: ClassVar[dict] = {
        "max_p": [Interval(Integral, 0, None, closed="left")],
        "max_d": [Interval(Integral, 0, 2, closed="both")],
        "max_q": [Interval(Integral, 0, None, closed="left")],
        "criterion": [StrOptions(set(CRITERIA))],
    }

    def __init__(self, *, max_p=3, max_d=2, max_q=3, criterion="aicc"):
        self.max_p = max_p
        self.max_d = max_d
        self.max_q = max_q
        self.criterion = criterion

    def _min_history(self) -> int:
        return self.max_p + self.max_d + self.max_q + 2

    def _candidates(self, values):
        d = kpss_differences(values, self.max_d)
        trends = {0: ["c"], 1: ["n", "t"]}.get(d, ["n"])
        return [{"order": (p, d, q), "trend": trend}
                for p, q, trend in itertools.product(range(self.max_p + 1),
                                                     range(self.max_q + 1), trends)]

    def _make(self, spec):
        return ARIMA(**spec)


def kpss_differences(values: np.ndarray, max_d: int, alpha: float = 0.05) -> int:
    """Differences (at most ``max_d``) until KPSS no longer rejects level stationarity."""
    from statsmodels.tsa.stattools import kpss

    for d in range(max_d + 1):
        x = np.diff(values, n=d)
        if d == max_d or len(x) < 3 or np.ptp(x) == 0:
            return d
        with warnings.catch_warnings(record=True):  # p-value outside the table: a warning
            warnings.simplefilter("ignore")
            p_value = kpss(x, regression="c", nlags="auto")[1]
        if p_value >= alpha:
            return d
    return max_d


@register
class AutoETS(_Selected):
    """ETS with error, trend and season chosen per channel (see the module docstring).

    seasonal_periods : season length for the seasonal candidates (None: none);
    damped : include damped-trend candidates; criterion : "aicc" | "aic" | "bic".
    Fitted: ``specs_`` (the chosen ETS parameters per channel), ``chosen_`` (the models).
    """

    covariates_unsupported = ETS.covariates_unsupported
    _parameter_constraints: ClassVar[dict] = {
        "seasonal_periods": [Interval(Integral, 2, None, closed="left"), None],
        "damped": ["boolean"],
        "criterion": [StrOptions(set(CRITERIA))],
    }

    def __init__(self, *, seasonal_periods=None, damped=True, criterion="aicc"):
        self.seasonal_periods = seasonal_periods
        self.damped = damped
        self.criterion = criterion

    def _min_history(self) -> int:
        return 2 * (self.seasonal_periods or 1) + 2

    def _candidates(self, values):
        positive = bool(np.all(values > 0))
        errors = ["add", "mul"] if positive else ["add"]
        trends = [(None, False), ("add", False)] + ([("add", True)] if self.damped else [])
        seasons = [None]
        if self.seasonal_periods is not None:
            seasons += ["add", "mul"] if positive else ["add"]
        return [{"error": e, "trend": t, "damped_trend": damped, "seasonal": s,
                 "seasonal_periods": self.seasonal_periods if s else None}
                for e, (t, damped), s in itertools.product(errors, trends, seasons)]

    def _make(self, spec):
        return ETS(**spec)

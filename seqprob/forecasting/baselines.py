"""Naive and seasonal naive forecasts with their random-walk predictive distributions."""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import numpy as np
from scipy import stats
from sklearn.utils._param_validation import Interval

from seqprob.core.persist import register
from seqprob.forecasting.base import Forecaster


class _SeasonalRandomWalk(Forecaster):
    """y_t = y_{t-m} + e_t, e_t ~ N(0, sigma^2): forecasts repeat the last season.

    sigma_ (channels,) is the RMS of the in-sample seasonal differences; the h-step variance is
    ``sigma^2 * (floor((h - 1) / m) + 1)`` (Hyndman & Athanasopoulos, FPP3 5.5).
    """

    supports_samples = True

    def _season(self) -> int:
        raise NotImplementedError

    def _min_history(self) -> int:
        return self._season() + 1

    def _fit(self, y, X, y_val):
        m = self._season()
        diffs = y.values[m:] - y.values[:-m]
        self.sigma_ = np.sqrt(np.mean(diffs**2, axis=0))  # (C,)

    def _steps(self, horizon: int) -> np.ndarray:
        """Row offsets ``-m + (h mod m)`` into the last season for steps ``h = 0..H-1``."""
        m = self._season()
        return np.arange(horizon) % m - m

    def _forecast(self, history, horizon, X_hist, X_future):
        return history[self._steps(horizon)]  # (H, C)

    def _forecast_batch(self, contexts, horizon):
        return contexts[:, self._steps(horizon)]  # (N, H, C)

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        seasons = np.arange(horizon) // self._season() + 1  # (H,)
        std = np.sqrt(seasons)[:, None] * self.sigma_  # (H, C)
        z = stats.norm.ppf(levels)  # (Q,)
        return self._forecast(history, horizon, None, None)[..., None] + std[..., None] * z

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future):
        m = self._season()
        noise = rng.standard_normal((n_samples, horizon, history.shape[1])) * self.sigma_
        paths = np.empty_like(noise)  # (S, H, C)
        for h in range(horizon):
            base = history[h - m] if h < m else paths[:, h - m]
            paths[:, h] = base + noise[:, h]
        return paths


@register
class Naive(_SeasonalRandomWalk):
    """Repeat the last value; random-walk intervals."""

    def _season(self) -> int:
        return 1


@register
class SeasonalNaive(_SeasonalRandomWalk):
    """Repeat the last ``season_length`` values; seasonal random-walk intervals."""

    _parameter_constraints: ClassVar[dict] = {
        "season_length": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, season_length: int = 24):
        self.season_length = season_length

    def _season(self) -> int:
        return self.season_length

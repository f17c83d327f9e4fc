"""Closed-form ridge regression from the lookback window to the output rows (the linear
floor)."""

from __future__ import annotations

from numbers import Integral
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import Interval

from seqprob.core.persist import register
from seqprob.forecasting.base import Forecaster, renamed_horizon
from seqprob.forecasting.windows import window_starts


def _design(values: np.ndarray, lookback: int, horizon: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Channel-independent windows: contexts ``(N * C, lookback)``, targets ``(N * C, H)``."""
    starts = window_starts(len(values), lookback, horizon)
    idx = starts[:, None] + np.arange(lookback + horizon)  # (N, L + H)
    rows = np.moveaxis(values[idx], 2, 1).reshape(-1, lookback + horizon)  # (N * C, L + H)
    return rows[:, :lookback], rows[:, lookback:]


@register
class RidgeForecaster(Forecaster):
    """Ridge regression ``context -> output_length`` rows, one model shared by all channels.

    Each window's context mean is removed from its context and target (``demean``), then
    ``W = (X'X + alpha I)^-1 X'Y`` with an intercept. ``alpha`` is chosen from ``alphas`` by
    the point MSE on ``y_val`` when ``fit`` gets one, else on the last 20% of the windows.
    Longer horizons roll out; ``horizon=`` is the deprecated name of ``output_length``.
    coef_ : (lookback, output_length); intercept_ : (output_length,); alpha_ : the chosen
    penalty.
    """

    _parameter_constraints: ClassVar[dict] = {
        "lookback": [Interval(Integral, 1, None, closed="left")],
        "output_length": [Interval(Integral, 1, None, closed="left")],
        "alphas": ["array-like"],
        "demean": ["boolean"],
    }

    def __init__(self, lookback: int = 96, output_length: int = 24, *,
                 alphas=(0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0), demean: bool = True,
                 **deprecated):
        self.lookback = lookback
        self.output_length = renamed_horizon(output_length, deprecated, type(self).__name__)
        self.alphas = alphas
        self.demean = demean

    def _check_params(self) -> None:
        alphas = np.asarray(self.alphas, dtype=np.float64).reshape(-1)
        if alphas.size == 0 or np.any(alphas < 0):
            raise ValueError(f"alphas: expected non-negative penalties, got {alphas.tolist()}")

    def _min_history(self) -> int:
        return self.lookback

    def _xy(self, values):
        X, Y = _design(values, self.lookback, self.output_length)
        if self.demean:
            mean = X.mean(axis=1, keepdims=True)
            X, Y = X - mean, Y - mean
        return X, Y

    def _fit(self, y, X_cov, y_val):
        X, Y = self._xy(y.values)
        alphas = np.asarray(self.alphas, dtype=np.float64).reshape(-1)
        if alphas.size > 1:
            if y_val is not None:
                Xv, Yv = self._xy(y_val.values)
                Xt, Yt = X, Y
            else:
                cut = int(len(X) * 0.8)
                Xt, Yt, Xv, Yv = X[:cut], Y[:cut], X[cut:], Y[cut:]
            scores = [np.mean((Xv @ w + b - Yv) ** 2) for w, b in _ridge_path(Xt, Yt, alphas)]
            self.alpha_ = float(alphas[int(np.argmin(scores))])
        else:
            self.alpha_ = float(alphas[0])
        ((self.coef_, self.intercept_),) = _ridge_path(X, Y, np.array([self.alpha_]))

    def _forecast_batch(self, contexts, horizon):
        contexts = contexts[:, -self.lookback:]
        pieces, done = [], 0
        while done < horizon:
            x = np.moveaxis(contexts, 2, 1)  # (N, C, L)
            mean = x.mean(axis=2, keepdims=True) if self.demean else 0.0
            step = np.moveaxis((x - mean) @ self.coef_ + self.intercept_ + mean, 2, 1)
            pieces.append(step)  # (N, H, C)
            contexts = np.concatenate([contexts, step], axis=1)[:, -self.lookback:]
            done += self.output_length
        return np.concatenate(pieces, axis=1)[:, :horizon]

    def _forecast(self, history, horizon, X_hist, X_future):
        return self._forecast_batch(history[None], horizon)[0]


def _ridge_path(X: np.ndarray, Y: np.ndarray, alphas: np.ndarray):
    """``(coef (L, H), intercept (H,))`` for each alpha, one eigendecomposition for all."""
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc = X - x_mean
    evals, evecs = np.linalg.eigh(Xc.T @ Xc)
    proj = evecs.T @ (Xc.T @ (Y - y_mean))  # (L, H)
    for alpha in alphas:
        coef = evecs @ (proj / (evals + alpha)[:, None])
        yield coef, y_mean - x_mean @ coef

"""Forecast metrics over numpy arrays; each returns one float averaged over every entry.

Point: :func:`mse`, :func:`mae`, :func:`rmse`, :func:`mase`, :func:`smape`.
Probabilistic: :func:`crps_samples` (samples first), :func:`crps_quantiles` and
:func:`quantile_loss` (quantile levels last), :func:`crps_gaussian` (closed form) and
:func:`coverage`; :func:`interval_scores` gives a backtest's coverage, width and CRPS from one
table of quantiles. ``POINT_METRICS`` maps names to the point metrics that backtests use by
default.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _pair(y_true, y_pred, name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: expected the shape of y_true {y_true.shape}, got "
                         f"{y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("y_true: expected at least one value, got an empty array")
    for label, arr in (("y_true", y_true), (name, y_pred)):
        if not np.isfinite(arr).all():
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"{label}: expected finite values, got {arr[first]} at {first}")
    return y_true, y_pred


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def smape(y_true, y_pred) -> float:
    """Symmetric MAPE in percent: ``200 * mean(|y - f| / (|y| + |f|))``, 0/0 counted as 0."""
    y_true, y_pred = _pair(y_true, y_pred)
    denom = np.abs(y_true) + np.abs(y_pred)
    ratio = np.divide(np.abs(y_true - y_pred), denom, out=np.zeros_like(denom),
                      where=denom > 0)
    return float(200.0 * ratio.mean())


def mase(y_true, y_pred, y_train, season_length: int = 1) -> float:
    """Mean absolute scaled error: MAE over the in-sample MAE of the seasonal naive forecast.

    y_true, y_pred : arrays of shape (horizon,) or (horizon, channels).
    y_train : the history, shape (time,) or (time, channels); each channel is scaled by its
    own in-sample naive error, then the scaled errors are averaged.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    y_train = np.asarray(y_train, dtype=np.float64)
    if y_train.shape[1:] != y_true.shape[1:] or len(y_train) <= season_length:
        raise ValueError(f"y_train: expected more than season_length={season_length} rows and "
                         f"trailing shape {y_true.shape[1:]}, got shape {y_train.shape}")
    scale = np.mean(np.abs(y_train[season_length:] - y_train[:-season_length]), axis=0)
    if np.any(scale == 0):
        raise ValueError("y_train: the in-sample naive error is zero (a constant series), so "
                         "MASE is undefined")
    return float(np.mean(np.abs(y_true - y_pred) / scale))


def crps_samples(y_true, samples) -> float:
    """CRPS estimated from samples: ``E|X - y| - E|X - X'| / 2`` (the unbiased-in-y form).

    samples : array of shape (n_samples, *y_true.shape). Uses the sorted-sample identity
    ``E|X - X'| = 2 / n^2 * sum_i (2i - n - 1) x_(i)`` so it costs O(n log n), not O(n^2).
    """
    samples = np.asarray(samples, dtype=np.float64)
    y_true, _ = _pair(y_true, samples[0] if samples.ndim else samples, "samples[0]")
    n = len(samples)
    first = np.mean(np.abs(samples - y_true), axis=0)
    ordered = np.sort(samples, axis=0)
    weights = (2 * np.arange(1, n + 1) - n - 1).reshape(-1, *([1] * y_true.ndim))
    spread = 2.0 / n**2 * np.sum(weights * ordered, axis=0)
    return float(np.mean(first - 0.5 * spread))


def crps_gaussian(y_true, mean, std) -> float:
    """Closed-form CRPS of a normal forecast ``N(mean, std^2)``, averaged over entries."""
    y_true, mean = _pair(y_true, mean, "mean")
    std = np.broadcast_to(np.asarray(std, dtype=np.float64), y_true.shape)
    if np.any(std <= 0):
        raise ValueError("std: expected positive standard deviations")
    z = (y_true - mean) / std
    crps = std * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    return float(np.mean(crps))


def _levels(levels, quantiles: np.ndarray) -> np.ndarray:
    levels = np.asarray(levels, dtype=np.float64).reshape(-1)
    if levels.size == 0 or np.any((levels <= 0) | (levels >= 1)):
        raise ValueError(f"levels: expected quantile levels in (0, 1), got {levels.tolist()}")
    if quantiles.shape[-1] != levels.size:
        raise ValueError(f"quantiles: expected {levels.size} quantiles on the last axis, got "
                         f"shape {quantiles.shape}")
    return levels


def _pinball(y_true, quantiles, levels) -> np.ndarray:
    """Pinball losses ``(..., n_levels)`` of ``quantiles (*y_true.shape, n_levels)``."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    levels = _levels(levels, quantiles)
    y_true, _ = _pair(y_true, quantiles[..., 0], "quantiles[..., 0]")
    diff = y_true[..., None] - quantiles
    return np.maximum(levels * diff, (levels - 1) * diff)


def quantile_loss(y_true, quantiles, levels) -> float:
    """Mean pinball loss ``max(q (y - f_q), (q - 1)(y - f_q))`` over entries and levels."""
    return float(np.mean(_pinball(y_true, quantiles, levels)))


def crps_quantiles(y_true, quantiles, levels) -> float:
    """CRPS approximated from quantiles: ``2 * mean over levels of the pinball loss``.

    CRPS is ``2 * integral_0^1 pinball_q dq``; with evenly spread levels this is the midpoint
    rule for that integral.
    """
    return 2.0 * quantile_loss(y_true, quantiles, levels)


def coverage(y_true, lower, upper) -> float:
    """Fraction of ``y_true`` inside ``[lower, upper]``."""
    y_true, lower = _pair(y_true, lower, "lower")
    _, upper = _pair(y_true, upper, "upper")
    if np.any(lower > upper):
        raise ValueError("lower: expected lower <= upper everywhere")
    return float(np.mean((y_true >= lower) & (y_true <= upper)))


CRPS_LEVELS = (np.arange(20) + 0.5) / 20  # 0.025, 0.075, ..., 0.975: CRPS by the midpoint rule


def check_interval_levels(level) -> np.ndarray:
    """Central interval coverages in percent (e.g. ``[80, 95]``) as a sorted float array."""
    arr = np.unique(np.asarray(level, dtype=np.float64).reshape(-1))
    if arr.size == 0 or np.any((arr <= 0) | (arr >= 100)):
        raise ValueError(f"level: expected interval coverages in percent, each in (0, 100), got "
                         f"{np.asarray(level).tolist()}")
    return arr


def interval_quantile_levels(level) -> np.ndarray:
    """Quantile levels ``(Q,)`` holding :data:`CRPS_LEVELS` and each interval's two ends."""
    level = check_interval_levels(level)
    ends = np.concatenate([(100 - level) / 200, (100 + level) / 200])
    return np.unique(np.round(np.concatenate([CRPS_LEVELS, ends]), 12))


def interval_bounds(quantiles, levels, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``level`` % central interval ``(lower, upper)`` read from ``quantiles (..., Q)``."""
    levels = np.round(np.asarray(levels, dtype=np.float64), 12)
    lo = np.flatnonzero(levels == round((100 - level) / 200, 12))
    hi = np.flatnonzero(levels == round((100 + level) / 200, 12))
    if not (lo.size and hi.size):
        raise ValueError(f"levels: expected the quantiles {(100 - level) / 200:g} and "
                         f"{(100 + level) / 200:g} for a {level:g}% interval, got "
                         f"{levels.tolist()}")
    return quantiles[..., lo[0]], quantiles[..., hi[0]]


def interval_scores(y_true, quantiles, levels, level) -> dict[str, float]:
    """``coverage-<l>`` and ``width-<l>`` (mean upper - lower) per interval ``l`` % and ``crps``.

    quantiles : array ``(*y_true.shape, Q)`` at ``levels`` (from
    :func:`interval_quantile_levels`); CRPS uses the :data:`CRPS_LEVELS` among them.
    """
    quantiles = np.asarray(quantiles, dtype=np.float64)
    levels = np.round(_levels(levels, quantiles), 12)
    scores = {}
    for lev in check_interval_levels(level):
        lower, upper = interval_bounds(quantiles, levels, lev)
        scores[f"coverage-{lev:g}"] = coverage(y_true, lower, upper)
        scores[f"width-{lev:g}"] = float(np.mean(upper - lower))
    grid = np.isin(levels, np.round(CRPS_LEVELS, 12))
    scores["crps"] = crps_quantiles(y_true, quantiles[..., grid], levels[grid])
    return scores


POINT_METRICS = {"mse": mse, "mae": mae, "rmse": rmse, "smape": smape}

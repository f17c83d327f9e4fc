"""The ETT long-horizon benchmark protocol as one function."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import clone

from seqprob.core.validation import check_int
from seqprob.forecasting.base import Forecaster
from seqprob.forecasting.datasets import ett_frame
from seqprob.forecasting.windows import StandardScaler, ett_split, window_starts


def evaluate_ett(name: str, model: Forecaster, lookback: int, horizon: int,
                 target: str | None = None, *, chunk: int = 512) -> dict[str, Any]:
    """Train ``model`` on ETT ``name`` under the literature's protocol; test MSE/MAE.

    Protocol: train rows ``[0, 8640)``, validation ``[8640 - lookback, 11520)``, test
    ``[11520 - lookback, 14400)``; z-score per column fitted on the training rows; a clone
    of ``model`` (with ``lookback``/``horizon`` set when it has them) is fit on the training
    rows with the validation rows as ``y_val``; every test window (stride 1, none dropped)
    is forecast from its own lookback; MSE and MAE on the z-scored data.
    ``target=None``: multivariate (all 7 columns); a column name: univariate.

    Returns ``{"mse", "mae", "val_mse", "train_seconds", "test_windows"}``.
    """
    check_int(horizon, "horizon", minimum=1)
    frame = ett_frame(name)
    if target is not None:
        if target not in frame.columns:
            raise ValueError(f"target: expected None or one of {list(frame.columns)}, got "
                             f"{target!r}")
        frame = frame[[target]]
    train, val, test = ett_split(frame.to_numpy(), lookback)
    scaler = StandardScaler().fit(train)
    train, val, test = (scaler.transform(v) for v in (train, val, test))
    params = model.get_params(deep=False)
    model = clone(model).set_params(**{k: v for k, v in
                                       (("lookback", lookback), ("horizon", horizon))
                                       if k in params})
    start = time.perf_counter()
    model.fit(train, y_val=val)
    train_seconds = time.perf_counter() - start
    return {**_test_scores(model, test, lookback, horizon, chunk),
            "val_mse": _val_mse(model, val, lookback, horizon, chunk),
            "train_seconds": train_seconds}


def _windows(values: np.ndarray, lookback: int, horizon: int, chunk: int):
    starts = window_starts(len(values), lookback, horizon)
    for block in np.array_split(starts, max(1, len(starts) // chunk)):
        idx = block[:, None] + np.arange(lookback + horizon)  # (n, L + H)
        rows = values[idx]  # (n, L + H, C)
        yield rows[:, :lookback], rows[:, lookback:]


def _scores(model, values, lookback, horizon, chunk) -> tuple[float, float, int]:
    se = ae = 0.0
    count = windows = 0
    for contexts, truth in _windows(values, lookback, horizon, chunk):
        err = model.predict_windows(contexts, horizon) - truth
        se += float(np.sum(err**2))
        ae += float(np.sum(np.abs(err)))
        count += err.size
        windows += len(err)
    return se / count, ae / count, windows


def _test_scores(model, test, lookback, horizon, chunk) -> dict[str, Any]:
    mse, mae, windows = _scores(model, test, lookback, horizon, chunk)
    return {"mse": mse, "mae": mae, "test_windows": windows}


def _val_mse(model, val, lookback, horizon, chunk) -> float:
    return _scores(model, val, lookback, horizon, chunk)[0]

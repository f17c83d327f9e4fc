"""The ETT long-horizon benchmark protocol as one function."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from seqprob.core.validation import check_int
from seqprob.forecasting.base import Forecaster
from seqprob.forecasting.datasets import ett_frame
from seqprob.forecasting.windows import StandardScaler, ett_split, window_starts


def evaluate_ett(name: str, model: Forecaster, lookback: int, horizon: int,
                 target: str | None = None, *, chunk: int = 512, stride: int = 1
                 ) -> dict[str, Any]:
    """Train ``model`` on ETT ``name`` under the literature's protocol; test MSE/MAE.

    Protocol: train rows ``[0, 8640)``, validation ``[8640 - lookback, 11520)``, test
    ``[11520 - lookback, 14400)``; z-score per column fitted on the training rows; a clone
    of ``model`` (with ``lookback``/``output_length`` set when it has them) is fit on the training
    rows with the validation rows as ``y_val``; every test window (stride 1, none dropped)
    is forecast from its own lookback; MSE and MAE on the z-scored data.
    ``target=None``: multivariate (all 7 columns); a column name: univariate.
    ``stride > 1`` scores every ``stride``-th test window only (a documented subsample).

    Returns ``{"mse", "mae", "val_mse", "train_seconds", "test_windows"}``.
    """
    check_int(horizon, "horizon", minimum=1)
    train, val, test = _ett_data(name, lookback, target)
    params = model.get_params(deep=False)
    model = clone(model).set_params(**{k: v for k, v in
                                       (("lookback", lookback), ("output_length", horizon))
                                       if k in params})
    start = time.perf_counter()
    model.fit(train, y_val=val)
    train_seconds = time.perf_counter() - start
    return {**_test_scores(model, test, lookback, horizon, chunk, stride),
            "val_mse": _val_mse(model, val, lookback, horizon, chunk),
            "train_seconds": train_seconds}


def evaluate_ett_horizons(name: str, model: Forecaster, lookback: int, horizons: Sequence[int],
                          target: str | None = None, *, chunk: int = 512, stride: int = 1,
                          timestamps: bool = False) -> dict[int, dict[str, Any]]:
    """:func:`evaluate_ett` for one-model-for-all-horizons forecasters (AutoTimes): one fit
    and one forecast of ``max(horizons)`` steps per test window; each horizon ``h`` is scored
    on its own windows (those whose ``h`` targets lie in the test rows) from the first ``h``
    steps. ``timestamps``: fit on DataFrames with the table's hourly ``DatetimeIndex`` and
    pass each test window's first time stamp as ``start_times`` (AutoTimes with
    ``timestamps=True``). Returns ``{h: {"mse", "mae", "test_windows", "train_seconds",
    "test_seconds", "history"}}``; ``history`` is the fitted model's ``history_`` (its
    learning curve) or None."""
    horizons = sorted({check_int(h, "horizons", minimum=1) for h in horizons})
    train, val, test = _ett_data(name, lookback, target)
    stamps = ett_split(ett_frame(name).index.to_numpy(), lookback)  # (rows,) per split
    if timestamps:
        train, val = (pd.DataFrame(v, index=pd.DatetimeIndex(t, freq="h"))
                      for v, t in ((train, stamps[0]), (val, stamps[1])))
    params = model.get_params(deep=False)
    model = clone(model).set_params(**({"lookback": lookback} if "lookback" in params else {}))
    start = time.perf_counter()
    model.fit(train, y_val=val)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    starts = window_starts(len(test), lookback, horizons[0], check_int(stride, "stride",
                                                                       minimum=1))
    preds = np.concatenate([
        model.predict_windows(test[block[:, None] + np.arange(lookback)], horizons[-1],
                              **({"start_times": stamps[2][block]} if timestamps else {}))
        for block in np.array_split(starts, max(1, len(starts) // chunk))])  # (n, H_max, C)
    test_seconds = time.perf_counter() - start
    history = getattr(model, "history_", None)
    out = {}
    for h in horizons:
        keep = starts + lookback + h <= len(test)
        truth = test[starts[keep, None] + lookback + np.arange(h)]  # (n_h, h, C)
        err = preds[keep, :h] - truth
        out[h] = {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))),
                  "test_windows": int(keep.sum()), "train_seconds": train_seconds,
                  "test_seconds": test_seconds, "history": history}
    return out


def _ett_data(name: str, lookback: int, target: str | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z-scored (train, validation, test) rows of ETT ``name`` (scaler fit on train)."""
    frame = ett_frame(name)
    if target is not None:
        if target not in frame.columns:
            raise ValueError(f"target: expected None or one of {list(frame.columns)}, got "
                             f"{target!r}")
        frame = frame[[target]]
    train, val, test = ett_split(frame.to_numpy(), lookback)
    scaler = StandardScaler().fit(train)
    train, val, test = (scaler.transform(v) for v in (train, val, test))
    return train, val, test


def _windows(values: np.ndarray, lookback: int, horizon: int, chunk: int, stride: int = 1):
    starts = window_starts(len(values), lookback, horizon, stride)
    for block in np.array_split(starts, max(1, len(starts) // chunk)):
        idx = block[:, None] + np.arange(lookback + horizon)  # (n, L + H)
        rows = values[idx]  # (n, L + H, C)
        yield rows[:, :lookback], rows[:, lookback:]


def _scores(model, values, lookback, horizon, chunk, stride=1) -> tuple[float, float, int]:
    se = ae = 0.0
    count = windows = 0
    for contexts, truth in _windows(values, lookback, horizon, chunk, stride):
        err = model.predict_windows(contexts, horizon) - truth
        se += float(np.sum(err**2))
        ae += float(np.sum(np.abs(err)))
        count += err.size
        windows += len(err)
    return se / count, ae / count, windows


def _test_scores(model, test, lookback, horizon, chunk, stride) -> dict[str, Any]:
    mse, mae, windows = _scores(model, test, lookback, horizon, chunk, stride)
    return {"mse": mse, "mae": mae, "test_windows": windows}


def _val_mse(model, val, lookback, horizon, chunk) -> float:
    return _scores(model, val, lookback, horizon, chunk)[0]

"""Panels of ragged series in the Nixtla layout: every row equals the model fitted on that
series alone (statsmodels for ARIMA intervals), cross_validation equals per-series backtests."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seqprob.forecasting import ARIMA, Naive, Panel, SeasonalNaive


def ragged():
    """Three hourly series with different starts, ends and lengths, plus a daily one."""
    rng = np.random.default_rng(0)
    parts = []
    for uid, start, n in (("a", "2024-01-01 00:00", 60), ("b", "2024-01-01 07:00", 45),
                          ("c", "2024-01-02 03:00", 80)):
        ds = pd.date_range(start, periods=n, freq="h")
        y = 5 + np.sin(2 * np.pi * np.arange(n) / 12) + 0.3 * rng.standard_normal(n)
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
    ds = pd.date_range("2023-06-01", periods=30, freq="D")
    parts.append(pd.DataFrame({"unique_id": "d", "ds": ds, "y": rng.standard_normal(30)}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)  # unsorted


def test_forecast_of_ragged_series_equals_each_series_alone():
    df = ragged()
    out = Panel([ARIMA((1, 0, 0)), Naive()]).forecast(df, h=4, level=[80, 95])
    assert list(out.columns) == ["unique_id", "ds", "ARIMA", "ARIMA-lo-80", "ARIMA-hi-80",
                                 "ARIMA-lo-95", "ARIMA-hi-95", "Naive", "Naive-lo-80",
                                 "Naive-hi-80", "Naive-lo-95", "Naive-hi-95"]
    for uid, group in df.groupby("unique_id"):
        alone = group.sort_values("ds").set_index("ds")["y"]
        rows = out[out.unique_id == uid]
        model = ARIMA((1, 0, 0)).fit(alone)
        expected = model.predict(4)
        assert list(rows.ds) == list(expected.index)  # each series continues its own stamps
        np.testing.assert_allclose(rows.ARIMA, expected)
        fc = model.results_[0].get_forecast(4)  # statsmodels' own intervals
        z = stats.norm.ppf(0.975)
        np.testing.assert_allclose(rows["ARIMA-hi-95"], fc.predicted_mean + z * fc.se_mean,
                                   rtol=1e-6)
        np.testing.assert_allclose(rows.Naive, alone.iloc[-1])
        assert (rows["Naive-lo-95"] < rows["Naive-lo-80"]).all()


def test_cross_validation_has_statsforecast_layout_and_equals_backtest():
    df = ragged()
    cv = Panel({"snaive": SeasonalNaive(12), "ar": ARIMA((1, 0, 0))}, backend="serial"
               ).cross_validation(df, h=3, n_windows=2, step_size=2, level=[90])
    assert list(cv.columns) == ["unique_id", "ds", "cutoff", "y", "snaive", "snaive-lo-90",
                                "snaive-hi-90", "ar", "ar-lo-90", "ar-hi-90"]
    assert len(cv) == 4 * 2 * 3
    for uid, group in df.groupby("unique_id"):
        y = group.sort_values("ds").set_index("ds")["y"]
        rows = cv[cv.unique_id == uid]
        bt = ARIMA((1, 0, 0)).backtest(y, start=len(y) - 5, horizon=3, stride=2, refit=True)
        np.testing.assert_allclose(rows.ar, bt.predictions.reshape(-1))
        np.testing.assert_allclose(rows.y, y.iloc[-5:].to_numpy()[[0, 1, 2, 2, 3, 4]])
        assert list(rows.cutoff.unique()) == list(y.index[[-6, -4]])
        assert (rows.ds > rows.cutoff).all()


def test_panel_bad_input():
    df = ragged()
    with pytest.raises(TypeError, match="df: expected a long DataFrame"):
        Panel([Naive()]).fit(df.rename(columns={"ds": "time"}))
    with pytest.raises(ValueError, match="models: expected a non-empty list"):
        Panel([Naive(), Naive()])
    with pytest.raises(TypeError, match="models: 'x' is not a seqprob Forecaster"):
        Panel({"x": 3})
    gap = df[~((df.unique_id == "a") & (df.ds == pd.Timestamp("2024-01-01 05:00")))]
    with pytest.raises(ValueError, match=r"df\[unique_id='a'\]: irregular time stamps"):
        Panel([Naive()]).fit(gap)
    with pytest.raises(ValueError, match="n_windows: a series of 30 rows"):
        Panel([Naive()], backend="serial").cross_validation(df, h=10, n_windows=3,
                                                            step_size=10)
    with pytest.raises(RuntimeError, match="fit"):
        Panel([Naive()]).predict(3)

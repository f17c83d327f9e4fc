"""AutoARIMA/AutoETS against brute force: every candidate fitted by statsmodels directly, the
lowest criterion wins, and the forecast equals statsmodels' with the chosen specification."""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.arima.model import ARIMA as SM
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.stattools import kpss

from seqprob.forecasting import AutoARIMA, AutoETS
from seqprob.forecasting.auto import kpss_differences


def series(n=120, seed=0):
    rng = np.random.default_rng(seed)
    ar = np.zeros(n)
    for t in range(2, n):
        ar[t] = 0.5 * ar[t - 1] - 0.3 * ar[t - 2] + rng.standard_normal()
    walk = 20 + np.cumsum(0.3 + rng.standard_normal(n))
    return np.column_stack([ar, walk])


@pytest.mark.slow
def test_auto_arima_picks_the_brute_force_minimum_per_channel(tmp_path):
    y = series()
    model = AutoARIMA(max_p=1, max_q=2, max_d=1).fit(y)
    for c in range(2):
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("ignore")
            p_value = kpss(y[:, c], regression="c", nlags="auto")[1]
            d = int(p_value < 0.05)
            trends = ["c"] if d == 0 else ["n", "t"]
            fits = {(p, q, tr): SM(y[:, c], order=(p, d, q), trend=tr).fit()
                    for p, q, tr in itertools.product(range(2), range(3), trends)}
        (p, q, tr), best = min(fits.items(), key=lambda kv: kv[1].aicc)
        assert model.specs_[c]["order"] == (p, d, q) and model.specs_[c]["trend"] == tr
        np.testing.assert_allclose(model.predict(4)[:, c], best.forecast(4), rtol=1e-5)
    assert model.specs_[0]["order"][1] == 0 and model.specs_[1]["order"][1] == 1
    model.save(tmp_path / "auto.safetensors")
    np.testing.assert_allclose(AutoARIMA.load(tmp_path / "auto.safetensors").predict(4),
                               model.predict(4), rtol=1e-8)
    bt = AutoARIMA(max_p=1, max_q=0, max_d=1).backtest(y, start=104, horizon=4, stride=8,
                                                       level=[80])
    assert {"coverage-80", "crps"} <= set(bt.metrics.columns)


@pytest.mark.slow
def test_auto_ets_picks_the_brute_force_minimum_and_updates():
    rng = np.random.default_rng(1)
    t = np.arange(144)
    y = 50 + 0.5 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.standard_normal(144)
    model = AutoETS(seasonal_periods=12, criterion="aic").fit(y[:120])
    candidates = []
    for error, (trend, damped), seasonal in itertools.product(
            ["add", "mul"], [(None, False), ("add", False), ("add", True)],
            [None, "add", "mul"]):
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("ignore")
            res = ETSModel(pd.Series(y[:120]), error=error, trend=trend, damped_trend=damped,
                           seasonal=seasonal,
                           seasonal_periods=12 if seasonal else None).fit(disp=False)
        candidates.append((res.aic, (error, trend, damped, seasonal), res))
    _, spec, best = min(candidates, key=lambda c: c[0])
    chosen = model.specs_[0]
    assert (chosen["error"], chosen["trend"], chosen["damped_trend"], chosen["seasonal"]) == spec
    np.testing.assert_allclose(model.predict(6), np.asarray(best.forecast(6)), rtol=1e-5)
    assert spec[3] is not None  # the seasonal signal is found
    model.update(y[120:])
    np.testing.assert_allclose(model.predict(3),
                               model.chosen_[0]._forecast(y[:, None], 3, None, None)[:, 0],
                               rtol=1e-10)


def test_small_auto_arima_grid_equals_brute_force(tmp_path):
    y = series(80)[:, 0]
    model = AutoARIMA(max_p=1, max_q=1, max_d=0, criterion="bic").fit(y)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")
        fits = {(p, q): SM(y, order=(p, 0, q), trend="c").fit() for p in (0, 1) for q in (0, 1)}
    (p, q), best = min(fits.items(), key=lambda kv: kv[1].bic)
    assert model.specs_[0]["order"] == (p, 0, q)
    np.testing.assert_allclose(model.predict(3), best.forecast(3), rtol=1e-5)
    model.save(tmp_path / "auto.safetensors")
    np.testing.assert_allclose(AutoARIMA.load(tmp_path / "auto.safetensors").predict(3),
                               model.predict(3), rtol=1e-8)


def test_kpss_differences_and_bad_input():
    rng = np.random.default_rng(0)
    assert kpss_differences(rng.standard_normal(300), 2) == 0
    assert kpss_differences(np.cumsum(np.cumsum(rng.standard_normal(300))), 2) == 2
    with pytest.raises(ValueError, match="criterion"):
        AutoARIMA(criterion="hqic").fit(series())
    with pytest.raises(ValueError, match="max_d"):
        AutoARIMA(max_d=3).fit(series())
    with pytest.raises(ValueError, match="seasonal_periods"):
        AutoETS(seasonal_periods=1).fit(series())

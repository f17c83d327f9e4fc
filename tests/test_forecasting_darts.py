"""darts TimeSeries in and out: the same numbers as numpy input, the time index continued."""

import numpy as np
import pandas as pd
import pytest
from darts import TimeSeries

from seqprob.forecasting import ARIMA, Naive


def hourly(n=120, seed=0):
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.standard_normal((n, 2)), axis=0) * 0.1 + np.sin(np.arange(n))[:, None]
    index = pd.date_range("2024-03-01", periods=n, freq="h")
    return TimeSeries.from_times_and_values(index, values, columns=["load", "temp"]), values


def test_darts_in_darts_out_with_the_index_continued(tmp_path):
    ts, values = hourly()
    model = ARIMA((1, 0, 0)).fit(ts)
    pred = model.predict(5)
    assert isinstance(pred, TimeSeries) and list(pred.components) == ["load", "temp"]
    assert pred.time_index[0] == ts.time_index[-1] + pd.Timedelta(hours=1)
    assert pred.freq == ts.freq
    np.testing.assert_allclose(pred.values(), ARIMA((1, 0, 0)).fit(values).predict(5))
    q = model.predict_quantiles(5, [0.1, 0.9])
    assert list(q.components) == ["load_q0.1", "load_q0.9", "temp_q0.1", "temp_q0.9"]
    np.testing.assert_allclose(q.values().reshape(5, 2, 2),
                               ARIMA((1, 0, 0)).fit(values).predict_quantiles(5, [0.1, 0.9]))
    samples = model.predict_samples(5, 50, random_state=0)
    assert samples.is_stochastic and samples.all_values().shape == (5, 2, 50)
    model.save(tmp_path / "m.safetensors")
    loaded = ARIMA.load(tmp_path / "m.safetensors").predict(5)
    assert isinstance(loaded, TimeSeries) and loaded.time_index.equals(pred.time_index)


def test_darts_covariates_update_and_new_series():
    ts, values = hourly()
    X = TimeSeries.from_times_and_values(ts.time_index, np.cos(np.arange(120.0)), columns=["x"])
    model = ARIMA((1, 0, 0)).fit(ts[:100], X=X[:100])
    direct = ARIMA((1, 0, 0)).fit(values[:100], X=X.values()[:100])
    np.testing.assert_allclose(model.predict(3, X=X[100:103]).values(),
                               direct.predict(3, X=X.values()[100:103]))
    model.update(ts[100:110], X_new=X[100:110])
    assert model.predict(2, X=X[110:112]).time_index[0] == ts.time_index[110]
    naive = Naive().fit(ts[:50]).predict(2, y=ts[60:90])
    assert naive.time_index[0] == ts.time_index[90]
    np.testing.assert_allclose(naive.values(), values[[89, 89]])


def test_stochastic_darts_input_is_refused():
    ts = TimeSeries.from_values(np.random.default_rng(0).standard_normal((20, 1, 3)))
    with pytest.raises(ValueError, match="y: expected a deterministic darts TimeSeries"):
        Naive().fit(ts)

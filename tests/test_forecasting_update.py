"""update(y_new) keeps the parameters and conditions on the longer history (oracles: statsmodels'
``results.append(refit=False)``, the exact naive value, the model's own forecast after the full
series); predict(y=new series) applies a fitted model to another series."""

import warnings

import numpy as np
import pandas as pd
import pytest

from seqprob.forecasting import (
    ARIMA,
    ETS,
    Naive,
    NeuralForecaster,
    PyroForecaster,
    RidgeForecaster,
    Theta,
)


def ar1(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = 0.7 * y[t - 1] + rng.standard_normal()
    return y


def test_arima_update_equals_statsmodels_append_without_refit():
    from statsmodels.tsa.arima.model import ARIMA as SM

    y = ar1()
    with warnings.catch_warnings(record=True):
        ref = SM(y[:150], order=(1, 0, 0)).fit().append(y[150:], refit=False)
    model = ARIMA((1, 0, 0)).fit(y[:150])
    params = np.asarray(model.results_[0].params).copy()
    assert model.update(y[150:170]).update(y[170:]) is model
    np.testing.assert_allclose(model.predict(5), ref.forecast(5), rtol=1e-6)
    np.testing.assert_allclose(model.predict_quantiles(3, [0.1, 0.9]),
                               ref.get_forecast(3).conf_int(alpha=0.2), rtol=1e-6)
    np.testing.assert_array_equal(model.results_[0].params, params)
    assert len(model.series_) == 200


@pytest.mark.parametrize("make", [lambda: ETS(trend="add"), lambda: Theta(),
                                  lambda: RidgeForecaster(lookback=12), lambda: Naive()])
def test_update_forecasts_like_conditioning_on_the_full_series(make):
    y = ar1() + 0.05 * np.arange(200)
    updated = make().fit(y[:150]).update(y[150:])
    conditioned = make().fit(y[:150])
    np.testing.assert_allclose(updated.predict(4),
                               conditioned._forecast(y[:, None], 4, None, None)[:, 0])


def test_update_continues_a_datetime_index_and_survives_save_load(tmp_path):
    index = pd.date_range("2024-01-01", periods=200, freq="h")
    y = pd.Series(ar1(), index=index, name="load")
    model = ARIMA((1, 0, 0)).fit(y[:150]).update(y[150:])
    pred = model.predict(3)
    assert pred.index[0] == index[-1] + index.freq
    model.save(tmp_path / "m.safetensors")
    pd.testing.assert_series_equal(ARIMA.load(tmp_path / "m.safetensors").predict(3), pred)


def test_update_takes_the_new_covariates():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 1))
    y = ar1() + 2 * X[:, 0]
    model = ARIMA((1, 0, 0)).fit(y[:150], X=X[:150]).update(y[150:190], X_new=X[150:190])
    full = ARIMA((1, 0, 0)).fit(y[:150], X=X[:150])
    np.testing.assert_allclose(model.predict(10, X=X[190:]),
                               full._forecast(y[:190, None], 10, X[:190], X[190:])[:, 0])
    with pytest.raises(ValueError, match="X_new"):
        model.update(y[190:])


def test_update_bad_input():
    y = pd.Series(ar1(60), index=pd.date_range("2024-01-01", periods=60, freq="D"))
    model = Naive().fit(y[:40])
    with pytest.raises(ValueError, match="y_new: expected time stamps continuing"):
        model.update(y[41:])
    with pytest.raises(ValueError, match="y_new: expected 1 channels"):
        model.update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="y_new"):
        model.update(np.array([1.0, np.nan]))
    assert len(model.series_) == 40  # nothing appended by the failed calls
    pyro = PyroForecaster(season_length=2, num_steps=2).fit(np.arange(12.0))
    with pytest.raises(TypeError, match="fit it again"):
        pyro.update(np.ones(2))


def test_neural_predicts_on_a_new_series_like_predict_windows():
    t = np.arange(400)
    y = np.sin(2 * np.pi * t / 24)
    model = NeuralForecaster("linear", lookback=48, max_epochs=2, verbose=False).fit(y[:300])
    other = pd.Series(2 + np.cos(2 * np.pi * t[:120] / 24),
                      index=pd.date_range("2030-01-01", periods=120, freq="h"))
    pred = model.predict(6, y=other)
    assert isinstance(pred, pd.Series) and pred.index[0] == pd.Timestamp("2030-01-06")
    window = other.to_numpy()[None, -48:, None]
    np.testing.assert_allclose(pred.to_numpy(), model.predict_windows(window, 6)[0, :, 0],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="y: expected 1 channels"):
        model.predict(6, y=np.zeros((100, 2)))
    with pytest.raises(ValueError, match="y: NeuralForecaster needs a series of at least 48"):
        model.predict(6, y=np.zeros(10))

"""SktimeForecaster against statsmodels called directly (forecasts, intervals, update without
refit) and sktime's own check_estimator on three wrapped models (slow)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sktime.forecasting.base import ForecastingHorizon
from sktime.forecasting.model_evaluation import evaluate
from sktime.split import ExpandingWindowSplitter
from sktime.utils.estimator_checks import check_estimator

from seqprob.forecasting import (
    ARIMA,
    AutoTimesForecaster,
    Naive,
    NeuralForecaster,
    RidgeForecaster,
    SktimeForecaster,
    Theta,
)
from seqprob.lm import tiny_lm
from tests.test_forecasting_update import ar1


def monthly(n=120, seed=0):
    return pd.Series(10 + ar1(n, seed), index=pd.period_range("2000-01", periods=n, freq="M"),
                     name="y")


def test_arima_through_sktime_equals_statsmodels():
    from statsmodels.tsa.arima.model import ARIMA as SM

    y = monthly()
    with warnings.catch_warnings(record=True):
        ref = SM(y.to_numpy()[:100], order=(1, 0, 0)).fit()
    model = SktimeForecaster(ARIMA((1, 0, 0))).fit(y[:100])
    relative = model.predict(fh=[1, 3])
    np.testing.assert_allclose(relative, ref.forecast(3)[[0, 2]], rtol=1e-6)
    assert list(relative.index) == list(y.index[[100, 102]])
    absolute = ForecastingHorizon(y.index[[100, 102]], is_relative=False)
    pd.testing.assert_series_equal(model.predict(fh=absolute), relative)
    interval = model.predict_interval(fh=[1, 2, 3], coverage=0.8)
    np.testing.assert_allclose(interval.to_numpy(), ref.get_forecast(3).conf_int(alpha=0.2),
                               rtol=1e-6)
    quantiles = model.predict_quantiles(fh=[2], alpha=[0.1, 0.9])
    np.testing.assert_allclose(quantiles.to_numpy()[0], interval.to_numpy()[1], rtol=1e-9)
    # update without refit: statsmodels' append(refit=False); with refit: a new fit
    model.update(y[100:110], update_params=False)
    appended = ref.append(y.to_numpy()[100:110], refit=False)
    np.testing.assert_allclose(model.predict(fh=[1, 2]), appended.forecast(2), rtol=1e-6)
    assert model.forecaster_.results_[0].params[1] == pytest.approx(ref.params[1])
    model.update(y[110:], update_params=True)
    with warnings.catch_warnings(record=True):
        refit = SM(y.to_numpy(), order=(1, 0, 0)).fit()
    np.testing.assert_allclose(model.predict(fh=[1]), refit.forecast(1), rtol=1e-5)


def test_sktime_evaluate_scores_every_fold_and_passes_covariates():
    y = monthly()
    X = pd.DataFrame({"x": np.sin(np.arange(120))}, index=y.index)
    y = y + 3 * X["x"]
    cv = ExpandingWindowSplitter(initial_window=80, step_length=10, fh=[1, 2, 3])
    result = evaluate(SktimeForecaster(ARIMA((1, 0, 0))), cv, y, X=X, error_score="raise")
    assert len(result) == 4 and np.isfinite(result.iloc[:, 0]).all()
    fitted = SktimeForecaster(ARIMA((1, 0, 0))).fit(y[:100], X=X[:100])
    direct = ARIMA((1, 0, 0)).fit(y.to_numpy()[:100], X=X.to_numpy()[:100])
    np.testing.assert_allclose(fitted.predict(fh=[1, 2], X=X[100:102]),
                               direct.predict(2, X=X.to_numpy()[100:102]))
    with pytest.raises(ValueError, match="X: the wrapped ARIMA was fitted with covariates"):
        fitted.predict(fh=[1, 2], X=X[101:103])


def test_adapter_tags_follow_the_wrapped_model():
    assert SktimeForecaster(Naive()).get_tag("capability:pred_int")  # samples
    assert SktimeForecaster(Theta()).get_tag("capability:pred_int")  # Gaussian quantiles
    assert not SktimeForecaster(RidgeForecaster()).get_tag("capability:pred_int")
    assert SktimeForecaster(ARIMA()).get_tag("capability:exogenous")
    assert not SktimeForecaster(Naive()).get_tag("capability:exogenous")
    assert not SktimeForecaster(ARIMA()).get_tag("capability:non_contiguous_X")
    with pytest.raises(TypeError, match="forecaster: expected a seqprob Forecaster"):
        SktimeForecaster("arima")


CHECKED = {
    "theta": lambda: Theta(),
    "neural": lambda: NeuralForecaster("linear", lookback=4, output_length=2, max_epochs=1,
                                       verbose=False),
    "autotimes": lambda: AutoTimesForecaster(tiny_lm(), segment_length=2, lookback=4,
                                             max_steps=2, projector_hidden=8, verbose=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKED))
def test_sktime_check_estimator_passes(name):
    results = check_estimator(SktimeForecaster(CHECKED[name]()), raise_exceptions=False,
                              verbose=False)
    failed = {k: v for k, v in results.items() if v != "PASSED"}
    assert len(results) > 100 and not failed, failed

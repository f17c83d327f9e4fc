"""Covariates (past and future exogenous variables) of the neural forecasters: the closed-form
conditional mean of a covariate-driven series as the oracle, the causal covariate term, shape
errors, persistence and update; panels and the sktime adapter pass them through (the same
model fitted directly as the oracle)."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.forecasting import ARIMA, NeuralForecaster, Panel, SktimeForecaster
from seqprob.forecasting.covariates import CovariateHead

NOISE = 0.1


def driven(n=400, channels=1, seed=0):
    """``y = 5 + x @ B + noise``: each channel a different mix of two i.i.d. covariates."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    mix = np.array([[2.0, -1.0], [0.0, 1.5]])[:, :channels]  # (2, channels)
    y = 5 + x @ mix + NOISE * rng.standard_normal((n, channels))
    return y, x, mix


def small(**kw):
    params = {"lookback": 8, "output_length": 4, "max_epochs": 20, "learning_rate": 1e-2,
              "batch_size": 32, "patience": 20, "verbose": False}
    return NeuralForecaster("linear", **{**params, **kw})


@pytest.mark.parametrize(("channels", "independent"), [(1, True), (2, False)])
def test_future_covariates_reach_the_conditional_mean(one_thread, channels, independent):
    y, x, mix = driven(channels=channels)
    model = small(channel_independent=independent).fit(y[:300], X=x[:300])
    bt = model.backtest(y, start=300, horizon=6, stride=6, X=x)
    # Oracle: E[y | x] = 5 + x @ mix, error NOISE^2; without X the best any forecast can do
    # is 5, error |mix|^2 + NOISE^2 per channel (>= 2.26 here).
    oracle = 5 + np.stack([x[t: t + 6] @ mix for t in range(300, 395, 6)])
    assert np.mean((bt.predictions - oracle) ** 2) < 0.05
    assert bt.summary()["mse"] < 0.05 < 2.26 <= (mix ** 2).sum(0).min() + NOISE ** 2


def test_rows_after_the_horizon_change_nothing_and_update_equals_backtest():
    y, x, _ = driven(n=120)
    model = small(max_epochs=2).fit(y[:100], X=x[:100])
    rng = np.random.default_rng(1)
    longer = np.concatenate([x[100:105], rng.standard_normal((3, 2))])
    np.testing.assert_allclose(model.predict(5, X=x[100:105]),
                               model.predict(8, X=longer)[:5], rtol=1e-6)
    bt = model.backtest(y, start=100, horizon=5, stride=10, X=x)
    model.update(y[100:110], X_new=x[100:110])
    np.testing.assert_allclose(model.predict(5, X=x[110:115]), bt.predictions[1], rtol=1e-6)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(0, 4), seed=st.integers(0, 100))
def test_covariate_head_is_causal_in_the_future_rows(h, seed):
    torch.manual_seed(seed)
    head = CovariateHead(lookback=3, output_length=5, n_covariates=2, width=2, n_outputs=1)
    for p in head.parameters():
        torch.nn.init.normal_(p)
    cov = torch.randn(4, 8, 2)
    changed = cov.clone()
    changed[:, 3 + h + 1:] = torch.randn_like(changed[:, 3 + h + 1:])
    out, out2 = head(cov), head(changed)
    torch.testing.assert_close(out[:, : h + 1], out2[:, : h + 1])
    if h < 4:
        assert not torch.allclose(out[:, h + 1:], out2[:, h + 1:])


def test_save_load_keeps_the_covariate_term(tmp_path):
    y, x, _ = driven(n=120)
    model = small(max_epochs=2).fit(y[:100], X=x[:100])
    loaded = NeuralForecaster.load(model.save(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(loaded.predict(6, X=x[100:106]), model.predict(6, X=x[100:106]))


def test_covariate_shapes_are_checked():
    y, x, _ = driven(n=120)
    model = small(max_epochs=1).fit(y[:100], X=x[:100])
    with pytest.raises(ValueError, match="needs their future values: expected an array of 6"):
        model.predict(6)
    with pytest.raises(ValueError, match="X: expected covariates for 6 time steps, got 4"):
        model.predict(6, X=x[100:104])
    with pytest.raises(ValueError, match="X: expected 2 covariate columns as in fit, got 1"):
        model.predict(6, X=x[100:106, :1])
    with pytest.raises(ValueError, match="contexts: the model was fitted with covariates"):
        model.predict_windows(y[None, :20], 4)
    with pytest.raises(ValueError, match="y_val: with covariates X"):
        small().fit(y[:80], X=x[:80], y_val=y[80:])
    with pytest.raises(ValueError, match="X: expected covariates for 100 time steps, got 99"):
        small().fit(y[:100], X=x[:99])
    with pytest.raises(TypeError, match="X: the model was fitted without covariates"):
        small(max_epochs=1).fit(y[:100]).predict(4, X=x[:4])


def _long(y, x, stamps):
    return pd.DataFrame({"unique_id": "s", "ds": stamps, "y": y[:, 0], "x0": x[:, 0],
                         "x1": x[:, 1]})


def test_panel_passes_exogenous_columns_like_statsforecast():
    y, x, _ = driven(n=130)
    stamps = pd.date_range("2024-01-01", periods=130, freq="h")
    df = _long(y[:120], x[:120], stamps[:120])
    future = _long(y[120:], x[120:], stamps[120:]).drop(columns="y")
    panel = Panel({"arima": ARIMA((1, 0, 0))}).fit(df)
    out = panel.predict(4, X_df=future.iloc[::-1])  # any row order
    direct = ARIMA((1, 0, 0)).fit(y[:120], X=x[:120]).predict(4, X=x[120:124])
    np.testing.assert_allclose(out["arima"], direct[:, 0])
    assert list(out.ds) == list(stamps[120:124])
    with pytest.raises(ValueError, match="X_df: the panel was fitted with covariates"):
        panel.predict(4)
    with pytest.raises(ValueError, match="missing"):
        panel.predict(4, X_df=future.iloc[:2])
    with pytest.raises(ValueError, match="X_df: expected the covariate columns"):
        panel.predict(4, X_df=future.drop(columns="x1"))
    cv = Panel({"arima": ARIMA((1, 0, 0))}).cross_validation(df, h=4, n_windows=2,
                                                             step_size=4)
    bt = ARIMA((1, 0, 0)).backtest(y[:120], start=112, horizon=4, stride=4, refit=True,
                                   X=x[:120])
    np.testing.assert_allclose(cv["arima"], bt.predictions.reshape(-1))


def test_sktime_adapter_passes_covariates_to_a_neural_forecaster():
    y, x, _ = driven(n=120)
    index = pd.period_range("2000-01", periods=120, freq="M")
    Y = pd.DataFrame(y, index=index, columns=["y"])
    X = pd.DataFrame(x, index=index, columns=["a", "b"])
    wrapped = SktimeForecaster(small(max_epochs=2))
    assert wrapped.get_tag("capability:exogenous")
    wrapped.fit(Y[:100], X=X[:100])
    direct = small(max_epochs=2).fit(y[:100], X=x[:100])
    np.testing.assert_allclose(wrapped.predict(fh=[1, 2, 3], X=X[100:103]).to_numpy(),
                               direct.predict(3, X=x[100:103]), rtol=1e-6)

"""Forecasters against oracles: exact naive values, statsmodels called directly, AR recovery,
backtest window counts, persistence, parameters and bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.base import clone

import seqprob
from seqprob.forecasting import (
    ARIMA,
    BACKBONES,
    ETS,
    AutoETS,
    Naive,
    NeuralForecaster,
    PyroForecaster,
    RidgeForecaster,
    SeasonalNaive,
    Theta,
)
from seqprob.forecasting import metrics as M


def ar2(n=1500, phi=(0.6, -0.3), seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = phi[0] * y[t - 1] + phi[1] * y[t - 2] + rng.standard_normal()
    return y


def seasonal(n=240, m=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 5 + np.sin(2 * np.pi * t / m) * 2 + 0.01 * t + rng.standard_normal(n) * 0.2


# ---- naive oracles --------------------------------------------------------------------------
def test_naive_and_seasonal_naive_exact_values():
    y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    np.testing.assert_array_equal(Naive().fit(y).predict(3), [[5, 50]] * 3)
    pred = SeasonalNaive(season_length=2).fit(y).predict(5)
    np.testing.assert_array_equal(pred[:, 0], [4, 5, 4, 5, 4])


def test_seasonal_naive_intervals_and_samples_follow_the_random_walk():
    y = seasonal(n=200, m=4)
    model = SeasonalNaive(4).fit(y)
    sigma = np.sqrt(np.mean((y[4:] - y[:-4]) ** 2))
    q = model.predict_quantiles(9, [0.1, 0.9])
    k = np.arange(9) // 4 + 1
    np.testing.assert_allclose(q[:, 1] - q[:, 0], 2 * stats.norm.ppf(0.9) * sigma * np.sqrt(k))
    samples = model.predict_samples(9, 20000, random_state=0)
    np.testing.assert_allclose(samples.std(axis=0), sigma * np.sqrt(k), rtol=0.03)
    np.testing.assert_allclose(samples.mean(axis=0), model.predict(9), atol=0.05)


# ---- statsmodels oracles --------------------------------------------------------------------
def test_arima_equals_statsmodels_called_directly():
    from statsmodels.tsa.arima.model import ARIMA as SM

    y = ar2(300)
    with warnings.catch_warnings(record=True):
        ref = SM(y, order=(2, 0, 1), trend="c").fit()
    model = ARIMA((2, 0, 1), trend="c").fit(y)
    np.testing.assert_allclose(model.predict(7), ref.forecast(7), rtol=1e-6)
    ci = ref.get_forecast(7).conf_int(alpha=0.2)
    q = model.predict_quantiles(7, [0.1, 0.9])
    np.testing.assert_allclose(q, ci, rtol=1e-6)
    # conditioning on a longer history keeps the parameters: statsmodels' apply
    longer = ar2(330)
    np.testing.assert_allclose(model._forecast(longer[:, None], 3, None, None)[:, 0],
                               ref.apply(longer).forecast(3), rtol=1e-6)


def test_sarimax_covariates_equal_statsmodels_and_are_checked():
    from statsmodels.tsa.arima.model import ARIMA as SM

    rng = np.random.default_rng(1)
    X = rng.standard_normal((205, 1))
    y = 2 * X[:200, 0] + ar2(200)
    with warnings.catch_warnings(record=True):
        ref = SM(y, exog=X[:200], order=(1, 0, 0)).fit()
    model = ARIMA((1, 0, 0)).fit(y, X=X[:200])
    np.testing.assert_allclose(model.predict(5, X=X[200:]), ref.forecast(5, exog=X[200:]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="future values"):
        model.predict(5)
    with pytest.raises(ValueError, match="5 time steps"):
        model.predict(5, X=X[:3])
    with pytest.raises(ValueError, match="1 covariate columns"):
        model.predict(5, X=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="covariates for 200"):
        ARIMA().fit(y, X=X)
    with pytest.raises(TypeError, match="Naive takes no covariates"):
        Naive().fit(y, X=X[:200])
    for model in (ETS(), Theta(), AutoETS()):
        with pytest.raises(TypeError, match="statsmodels' .* has no exogenous regressors"):
            model.fit(y, X=X[:200])


def test_ets_and_theta_equal_statsmodels_called_directly():
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.theta import ThetaModel

    y = seasonal()
    with warnings.catch_warnings(record=True):
        ref = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=True).fit(disp=False)
        theta = ThetaModel(y, period=12).fit()
    model = ETS(trend="add", damped_trend=True).fit(y)
    np.testing.assert_allclose(model.predict(6), np.asarray(ref.forecast(6)), rtol=1e-6)
    np.testing.assert_allclose(Theta(period=12).fit(y).predict(6), theta.forecast(6), rtol=1e-8)
    pi = theta.prediction_intervals(6, alpha=0.2)
    np.testing.assert_allclose(Theta(period=12).fit(y).predict_quantiles(6, [0.1, 0.9]),
                               pi.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("period", [None, 12])
def test_theta_forecasts_a_constant_channel_flat(period):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    # statsmodels' fit breaks down on zero variance (a rising line); the closed form for a
    # constant is flat, and a 1e-9 trend (which statsmodels fits) is the continuity oracle
    y = np.column_stack([np.full(60, 3.0), seasonal(60)])
    model = Theta(period=period).fit(y)
    np.testing.assert_array_equal(model.predict(5)[:, 0], 3.0)
    q = model.predict_quantiles(5, [0.1, 0.9])
    np.testing.assert_array_equal(q[:, 0], 3.0)
    with warnings.catch_warnings(record=True):
        near = ThetaModel(3.0 + 1e-9 * np.arange(60), period=period,
                          deseasonalize=period is not None).fit().forecast(5)
        other = ThetaModel(y[:, 1], period=period, deseasonalize=period is not None).fit()
    np.testing.assert_allclose(model.predict(5)[:, 0], near, rtol=1e-7)
    np.testing.assert_allclose(model.predict(5)[:, 1], other.forecast(5), rtol=1e-8)


@pytest.mark.parametrize("make", [lambda: ARIMA((1, 1, 0)), lambda: ETS(trend="add"),
                                  lambda: Theta(period=12)])
def test_statistical_models_save_load_same_forecast(make, tmp_path):
    y = pd.DataFrame({"a": seasonal(), "b": seasonal(seed=1)},
                     index=pd.date_range("2020", periods=240, freq="D"))
    model = make().fit(y)
    path = model.save(tmp_path / "m.safetensors")
    loaded = seqprob.load(path)
    assert type(loaded) is type(model)
    pd.testing.assert_frame_equal(loaded.predict(5), model.predict(5))


# ---- linear models recover a known AR process ---------------------------------------------------
def test_ridge_recovers_ar2_coefficients():
    model = RidgeForecaster(lookback=2, output_length=1, alphas=(1e-6,), demean=False).fit(ar2(5000))
    np.testing.assert_allclose(model.coef_[:, 0], [-0.3, 0.6], atol=0.03)


def test_neural_linear_backbone_recovers_ar2_coefficients():
    model = NeuralForecaster("linear", lookback=2, output_length=1, revin=False, max_epochs=40,
                             batch_size=64, learning_rate=0.01, validation_fraction=0,
                             verbose=False).fit(ar2(3000))
    layer = model.network_.backbone.head.layers[0]
    # AR coefficients do not change under z-scoring; inputs are ordered oldest first
    np.testing.assert_allclose(layer.weight.detach().numpy()[0], [-0.3, 0.6], atol=0.05)


# ---- the neural forecaster --------------------------------------------------------------------
def small_neural(**kw):
    params = {"lookback": 24, "output_length": 6, "max_epochs": 3, "verbose": False,
              "quantiles": (0.1, 0.5, 0.9)}
    params.update(kw)
    return NeuralForecaster("dlinear", **params)


def test_neural_pandas_round_trip_quantiles_and_rollout():
    y = pd.DataFrame({"a": seasonal(), "b": seasonal(seed=2)},
                     index=pd.date_range("2021-01-01", periods=240, freq="h"))
    model = small_neural().fit(y)
    pred = model.predict(10)  # beyond the trained horizon: rolled out
    assert list(pred.columns) == ["a", "b"]
    assert pred.index[0] == y.index[-1] + pd.Timedelta("1h") and len(pred) == 10
    q = model.predict_quantiles(6, [0.1, 0.9])
    assert (q.xs(0.1, level="quantile", axis=1) <= q.xs(0.9, level="quantile", axis=1)
            ).to_numpy().all()
    with pytest.raises(ValueError, match="trained for levels"):
        model.predict_quantiles(6, [0.25])
    with pytest.raises(ValueError, match="at most the trained output_length"):
        model.predict_quantiles(7, [0.1])
    with pytest.raises(NotImplementedError, match="predict_quantiles"):
        model.predict_samples(6, 10)


@pytest.mark.parametrize("loss", ["mse", "mae"])
def test_neural_learns_a_seasonal_signal_better_than_naive(loss):
    y = seasonal(n=600)
    model = small_neural(max_epochs=15, quantiles=None, learning_rate=0.01, loss=loss
                         ).fit(y[:576])
    neural = M.mse(y[576:582], model.predict(6))
    naive = M.mse(y[576:582], Naive().fit(y[:576]).predict(6))
    assert neural < naive / 2


def test_neural_save_load_clone_and_params(tmp_path):
    y = seasonal()
    model = small_neural(backbone_kwargs={"kernel_size": 5}).fit(y)
    loaded = NeuralForecaster.load(model.save(tmp_path / "n.safetensors"))
    np.testing.assert_allclose(loaded.predict(6), model.predict(6), rtol=1e-6)
    np.testing.assert_allclose(loaded.predict_quantiles(6, [0.9]), model.predict_quantiles(6, [0.9]))
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "network_")
    assert twin.set_params(lookback=12).lookback == 12
    # the same seed gives the same network
    again = small_neural(backbone_kwargs={"kernel_size": 5}).fit(y)
    np.testing.assert_array_equal(again.predict(6), model.predict(6))


def test_neural_backbone_is_pluggable():
    class Last(torch.nn.Module):
        """Repeat the last context value (plus a learned bias)."""

        def __init__(self, lookback, horizon, n_channels, n_outputs):
            super().__init__()
            self.horizon, self.n_outputs = horizon, n_outputs
            self.bias = torch.nn.Parameter(torch.zeros(n_outputs))

        def forward(self, x):  # (B, L, C) -> (B, H, C, O)
            last = x[:, -1:, :, None]
            return last.expand(-1, self.horizon, -1, self.n_outputs) + self.bias

    model = NeuralForecaster(Last, lookback=4, output_length=3, revin=False, max_epochs=1,
                             learning_rate=1e-9, verbose=False).fit(seasonal())
    np.testing.assert_allclose(model.predict(3), Naive().fit(seasonal()).predict(3), atol=1e-5)
    with pytest.raises(TypeError, match="callable cannot be saved"):
        model.save("/tmp/never.safetensors")


def test_backbone_auxiliary_loss_joins_training():
    class Shrink(torch.nn.Module):
        """Zero forecasts plus a parameter that only the auxiliary loss w^2 pulls to 0."""

        def __init__(self, lookback, horizon, n_channels, n_outputs):
            super().__init__()
            self.horizon, self.n_outputs = horizon, n_outputs
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return x.new_zeros(x.shape[0], self.horizon, x.shape[2], self.n_outputs)

        def forward_with_loss(self, x):
            return self.forward(x), self.w**2

    model = NeuralForecaster(Shrink, lookback=4, output_length=2, max_epochs=3, learning_rate=0.1,
                             validation_fraction=0, verbose=False).fit(seasonal())
    assert model.network_.backbone.w.item() < 0.8  # without the auxiliary loss: no gradient, 1


def test_neural_bad_input():
    with pytest.raises(ValueError, match="at least 30 time steps, got 20"):
        small_neural(validation_fraction=0).fit(np.arange(20.0))
    with pytest.raises(ValueError, match="validation_fraction"):
        small_neural().fit(np.arange(34.0))
    with pytest.raises(ValueError, match="backbone"):
        NeuralForecaster("transformer", verbose=False).fit(seasonal())
    with pytest.raises(ValueError, match="'loss' parameter"):
        small_neural(loss="l3").fit(seasonal())
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            small_neural(device="cuda").fit(seasonal())
    model = small_neural().fit(seasonal())
    for horizon in (0, -3):
        with pytest.raises(ValueError, match="horizon"):
            model.predict(horizon)
    with pytest.raises(ValueError, match="at least 24"):
        model.predict_windows(np.zeros((2, 10, 1)), 6)
    bad = np.zeros((1, 30, 1))
    bad[0, 7, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.predict_windows(bad, 6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_neural_trains_on_gpu_like_cpu():
    y = seasonal()
    cpu = small_neural().fit(y)
    gpu = small_neural(device="cuda").fit(y)
    np.testing.assert_allclose(gpu.predict(6), cpu.predict(6), rtol=1e-3, atol=1e-3)


# ---- backtests ------------------------------------------------------------------------------
@pytest.mark.parametrize(("refit", "refits"), [(False, 1), (True, 6), (4, 2)])
def test_backtest_windows_and_refits_counted_exactly(refit, refits):
    y = pd.Series(seasonal(n=100), index=pd.date_range("2022", periods=100, freq="D"))
    bt = SeasonalNaive(12).backtest(y, start=70, horizon=5, stride=5, refit=refit)
    assert len(bt.metrics) == 6  # origins 70, 75, ..., 95
    assert int(bt.metrics["refit"].sum()) == refits
    assert bt.predictions.shape == bt.truth.shape == (6, 5, 1)
    assert bt.forecasts[0].index[0] == y.index[70]
    np.testing.assert_array_equal(bt.forecasts[2].to_numpy(), y.to_numpy()[68:73])
    manual = [M.mse(y.to_numpy()[t:t + 5], y.to_numpy()[t - 12:t - 7]) for t in range(70, 100, 5)]
    np.testing.assert_allclose(bt.metrics["mse"], manual)
    assert set(bt.summary().index) == {"mse", "mae", "rmse", "smape", "mase"}


def test_backtest_bad_arguments():
    y = seasonal(n=50)
    with pytest.raises(ValueError, match="start"):
        Naive().backtest(y, start=48, horizon=5)
    with pytest.raises(ValueError, match="stride"):
        Naive().backtest(y, start=10, horizon=5, stride=0)
    with pytest.raises(ValueError, match="refit"):
        Naive().backtest(y, start=10, horizon=5, refit=0)
    with pytest.raises(ValueError, match="at least 13"):
        SeasonalNaive(12).fit(y[:5])


def test_backtest_of_neural_reuses_parameters_without_refit():
    y = seasonal(n=300)
    model = small_neural(quantiles=None)
    bt = model.backtest(y, start=250, horizon=6, stride=10)
    assert bt.metrics["refit"].tolist() == [True, False, False, False, False]
    assert not hasattr(model, "network_")  # clones were fit, the model is untouched
    np.testing.assert_allclose(bt.model.predict(6), bt.predictions[0, :, 0])  # fit on y[:250]


# ---- pyro ---------------------------------------------------------------------------------------
def test_pyro_forecaster_samples_cover_the_truth_and_persist(tmp_path):
    y = seasonal(n=132, m=12)
    model = PyroForecaster(12, num_steps=150, random_state=0).fit(y[:120])
    samples = model.predict_samples(12, 300, random_state=1)
    assert samples.shape == (300, 12)
    assert M.crps_samples(y[120:], samples) < M.mae(y[120:], Naive().fit(y[:120]).predict(12))
    q = model.predict_quantiles(12, [0.05, 0.95])
    assert M.coverage(y[120:], q[:, 0], q[:, 1]) >= 0.75
    loaded = PyroForecaster.load(model.save(tmp_path / "p.safetensors"))
    np.testing.assert_allclose(loaded.predict_samples(12, 50, random_state=3),
                               model.predict_samples(12, 50, random_state=3), rtol=1e-5)
    with pytest.raises(ValueError, match="refit=True"):
        PyroForecaster(12, num_steps=5).backtest(y, start=100, horizon=6, stride=6)


# ---- backbones ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize(("lookback", "horizon", "channels", "outputs"),
                         [(48, 12, 1, 1), (50, 13, 3, 4)])
def test_backbone_contract_shapes(name, lookback, horizon, channels, outputs):
    kwargs = {"period": 12} if name == "sparse" else {}
    net = BACKBONES[name](lookback, horizon, channels, outputs, **kwargs)
    out = net(torch.randn(5, lookback, channels))
    assert out.shape == (5, horizon, channels, outputs)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_sparse_linear_repeats_a_periodic_signal_exactly():
    """With the aggregation off and identity-like weights, each phase copies its last value."""
    net = BACKBONES["sparse"](48, 30, 1, 1, period=12)
    with torch.no_grad():
        net.aggregate.weight.zero_()
        net.linear.weight.zero_()
        net.linear.weight[:, -1] = 1.0  # every future period = the last period
    x = torch.sin(torch.arange(48.0) * 2 * torch.pi / 12)[None, :, None]
    expect = torch.sin(torch.arange(48.0, 78.0) * 2 * torch.pi / 12)
    torch.testing.assert_close(net(x)[0, :, 0, 0], expect, atol=1e-5, rtol=0)


def test_a_forecaster_file_naming_an_unknown_argument_is_refused(tmp_path):
    from seqprob.core.persist import load_checkpoint, save_checkpoint

    y = pd.DataFrame({"a": seasonal()}, index=pd.date_range("2020", periods=240, freq="D"))
    path = ETS(trend="add").fit(y).save(tmp_path / "m.safetensors")
    tensors, config, kind = load_checkpoint(path)
    config["params"]["__init__"] = 1
    save_checkpoint(path, tensors, kind=kind, config=config)
    with pytest.raises(ValueError, match=r"takes no argument\(s\) \['__init__'\]"):
        seqprob.load(path)

"""The shared training loop and the estimator-family contract of the forecasters.

Oracle for the loop: a one-weight network trained on the loss ``-w``, whose gradient is the
constant -1, so Adam moves ``w`` by exactly ``lr`` per step (m_hat / sqrt(v_hat) = 1); the
validation score ``(w - 0.42)^2`` is then known in closed form after every epoch.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from seqprob.forecasting import (
    ARIMA,
    ETS,
    AutoTimesForecaster,
    Naive,
    NeuralForecaster,
    PyroForecaster,
    RidgeForecaster,
    SeasonalNaive,
    Series,
    Theta,
)
from seqprob.forecasting.training import train

LR = 0.1


def _weight() -> nn.Linear:
    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    return net


def _run(net, **kw):
    kw = {"batch_size": 1, "max_epochs": 20, "learning_rate": LR, **kw}
    return train(net, lambda items: -net.weight.sum() * len(items), torch.arange(1), **kw)


def test_early_stopping_restores_the_best_state():
    net = _weight()
    run = _run(net, validate=lambda: (net.weight.item() - 0.42) ** 2, patience=2)
    # w = 0.1 e after epoch e: scores fall until e = 4 (0.0004), then rise (e = 5, 6): stop
    want = [(0.1 * e - 0.42) ** 2 for e in range(1, 7)]
    np.testing.assert_allclose([h["val_mse"] for h in run.history], want, atol=1e-6)
    assert [h["step"] for h in run.history] == [1, 2, 3, 4, 5, 6]
    assert run.stopped_early and run.steps == 6
    assert run.best_val_mse == pytest.approx(0.0004, abs=1e-6)
    assert net.weight.item() == pytest.approx(0.4, abs=1e-5)  # restored (trained on to 0.6)


def test_without_patience_it_trains_the_whole_budget_and_keeps_the_best():
    net = _weight()
    run = _run(net, max_epochs=8, validate=lambda: (net.weight.item() - 0.42) ** 2)
    assert len(run.history) == 8 and not run.stopped_early
    assert net.weight.item() == pytest.approx(0.4, abs=1e-5)


def test_without_validation_the_last_state_stays():
    net = _weight()
    run = _run(net, max_epochs=3)
    assert np.isnan([h["val_mse"] for h in run.history]).all() and run.best_val_mse == np.inf
    assert net.weight.item() == pytest.approx(0.3, abs=1e-5)
    assert [h["train_loss"] for h in run.history] == pytest.approx([0.0, -0.1, -0.2],
                                                                   abs=1e-5)


def test_step_budgets_and_validation_every_k_steps():
    net = _weight()
    seen = []
    items = torch.arange(10)
    run = train(net, lambda b: -net.weight.sum() * len(b), items, batch_size=2, max_epochs=5,
                max_batches_per_epoch=3, max_steps=11, learning_rate=LR, val_every=4,
                validate=lambda: seen.append(net.weight.item()) or 0.0)
    assert run.steps == 11  # 3 batches per epoch, cut at 11 steps (mid 4th epoch)
    assert [h["step"] for h in run.history] == [4, 8, 11]
    assert [h["epoch"] for h in run.history] == [1, 2, 3]
    assert len(seen) == 3


def test_the_seed_fixes_the_batch_order_and_dropout():
    def curve(seed):
        torch.manual_seed(seed + 1)  # the caller's RNG must not matter
        net = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 1))
        x = torch.randn(32, 4)
        return train(net, lambda b: net(x[b]).pow(2).mean(), torch.arange(32), batch_size=5,
                     max_epochs=3, learning_rate=1e-2, seed=seed).history

    assert curve(0) == curve(0)
    assert curve(0) != curve(1)


# ---- the estimator family ----------------------------------------------------------------
def test_the_deprecated_horizon_keyword_is_renamed_output_length():
    for cls in (NeuralForecaster, RidgeForecaster):
        with pytest.warns(FutureWarning, match="output_length"):
            model = cls(horizon=6)
        params = model.get_params()
        assert params["output_length"] == 6 and "horizon" not in params
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert clone(model).output_length == 6
        with pytest.raises(TypeError, match="unexpected keyword argument 'horizn'"):
            cls(horizn=6)


@pytest.mark.parametrize(("model", "name"), [
    (NeuralForecaster(learning_rate=0), "learning_rate"),
    (NeuralForecaster(max_batches_per_epoch=0), "max_batches_per_epoch"),
    (NeuralForecaster(loss="l3"), "loss"),
    (NeuralForecaster(backbone="transformer"), "backbone"),
    (RidgeForecaster(output_length=0), "output_length"),
    (SeasonalNaive(0), "season_length"),
    (ETS(error="sub"), "error"),
    (Theta(period=1), "period"),
    (PyroForecaster(num_steps=0), "num_steps"),
    (AutoTimesForecaster(None, width=4, val_every=0), "val_every"),
    (AutoTimesForecaster(None, width=4, patience=0), "patience"),
])
def test_declared_constraints_are_checked_when_fit_starts(model, name):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        model.fit(np.arange(400.0))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        model.backtest(np.arange(400.0), start=300, horizon=4)


@pytest.mark.parametrize(("model", "match"), [
    (ARIMA(order=(1, 0)), "order: expected 3 non-negative ints"),
    (ETS(seasonal="add"), "seasonal_periods: expected the season length"),
    (RidgeForecaster(alphas=(1.0, -1.0)), "alphas: expected non-negative"),
    (NeuralForecaster(quantiles=(0.5, 1.5)), "quantiles: expected levels"),
    (NeuralForecaster(backbone=int), "backbone: expected a name"),
    (AutoTimesForecaster(None, width=None), "width: expected"),
])
def test_checks_across_parameters_run_before_fitting(model, match):
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(np.arange(400.0))


class _Recorder(Naive):
    def _fit(self, y, X, y_val):
        self.seen_ = (y, y_val)
        super()._fit(y, X, y_val)


def test_fit_hands_the_series_with_its_time_index_to_fit():
    index = pd.date_range("2024-01-01", periods=30, freq="h")
    y = pd.Series(np.arange(30.0), index=index)
    model = _Recorder().fit(y.iloc[:20], y_val=y.iloc[20:])
    seen, seen_val = model.seen_
    assert isinstance(seen, Series) and isinstance(seen_val, Series)
    pd.testing.assert_index_equal(seen.index, index[:20])
    pd.testing.assert_index_equal(seen_val.index, index[20:])

"""Metrics against closed forms and brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from seqprob.forecasting import metrics as M


def test_point_metrics_by_hand():
    y, f = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
    assert M.mse(y, f) == pytest.approx((1 + 0 + 9) / 3)
    assert M.mae(y, f) == pytest.approx(4 / 3)
    assert M.rmse(y, f) == pytest.approx(np.sqrt(10 / 3))
    assert M.smape(y, f) == pytest.approx(200 / 3 * (1 / 3 + 0 + 3 / 5))
    assert M.smape([0.0], [0.0]) == 0.0


def test_mase_scales_by_in_sample_seasonal_naive_error():
    train = np.array([1.0, 3.0, 2.0, 6.0])  # lag-2 diffs: 1, 3 -> scale 2
    assert M.mase([4.0, 4.0], [5.0, 1.0], train, season_length=2) == pytest.approx((1 + 3) / 2 / 2)
    with pytest.raises(ValueError, match="constant"):
        M.mase([1.0], [1.0], np.ones(5))


@settings(max_examples=25, deadline=None)
@given(mu=st.floats(-3, 3), sigma=st.floats(0.2, 3), y=st.floats(-5, 5))
def test_crps_gaussian_closed_form_equals_the_integral(mu, sigma, y):
    """CRPS = int (F(x) - 1{x >= y})^2 dx, integrated numerically on both sides of y."""
    cdf = stats.norm(mu, sigma).cdf
    left = integrate.quad(lambda x: cdf(x) ** 2, -np.inf, y)[0]
    right = integrate.quad(lambda x: (1 - cdf(x)) ** 2, y, np.inf)[0]
    assert M.crps_gaussian([y], [mu], [sigma]) == pytest.approx(left + right, rel=1e-6, abs=1e-8)


def test_crps_from_samples_converges_to_the_closed_form():
    rng = np.random.default_rng(0)
    y = np.array([0.3, -1.0, 2.5])
    samples = rng.normal(0.5, 1.5, size=(200_000, 3))
    assert M.crps_samples(y, samples) == pytest.approx(M.crps_gaussian(y, np.full(3, 0.5), 1.5),
                                                       rel=5e-3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=12), st.floats(-10, 10))
def test_crps_sorted_formula_equals_brute_force_pairs(xs, y):
    x = np.array(xs)
    brute = np.mean(np.abs(x - y)) - 0.5 * np.mean(np.abs(x[:, None] - x[None, :]))
    assert M.crps_samples([y], x[:, None]) == pytest.approx(brute, abs=1e-9)


def test_quantile_crps_approximates_the_integral():
    levels = (np.arange(999) + 0.5) / 999
    y = np.array([0.7, -2.0])
    q = stats.norm.ppf(levels)[None, :].repeat(2, axis=0)  # (2, 999) quantiles of N(0, 1)
    assert M.crps_quantiles(y, q, levels) == pytest.approx(M.crps_gaussian(y, np.zeros(2), 1.0),
                                                           rel=1e-3)


def test_quantile_loss_and_coverage_by_hand():
    # y = 1, quantiles 0 (level 0.1) and 3 (level 0.9): 0.1 * 1 and 0.1 * 2
    assert M.quantile_loss([1.0], [[0.0, 3.0]], [0.1, 0.9]) == pytest.approx(0.15)
    assert M.coverage([0.0, 1.0, 5.0], [-1, -1, -1], [1, 1, 1]) == pytest.approx(2 / 3)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="shape"):
        M.mse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        M.mae([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="levels"):
        M.quantile_loss([1.0], [[1.0]], [1.5])
    with pytest.raises(ValueError, match="2 quantiles"):
        M.quantile_loss([1.0], [[1.0]], [0.1, 0.9])
    with pytest.raises(ValueError, match="lower <= upper"):
        M.coverage([0.0], [1.0], [0.0])
    with pytest.raises(ValueError, match="positive"):
        M.crps_gaussian([0.0], [0.0], [0.0])


# ---- probabilistic backtests ----------------------------------------------------------------
def test_probabilistic_backtest_scores_equal_the_gaussian_closed_forms():
    import warnings

    from statsmodels.tsa.arima.model import ARIMA as SM

    from seqprob.forecasting import ARIMA

    rng = np.random.default_rng(0)
    y = np.zeros(400)
    for t in range(1, 400):
        y[t] = 0.6 * y[t - 1] + rng.standard_normal()
    bt = ARIMA((1, 0, 0)).backtest(y, start=200, horizon=3, stride=3, level=[80, 95])
    assert bt.quantiles.shape == (len(bt.metrics), 3, 1, len(bt.quantile_levels))
    with warnings.catch_warnings(record=True):
        ref = SM(y[:200], order=(1, 0, 0)).fit()
    mean, std = [], []
    for t in range(200, 398, 3):  # the same windows, statsmodels conditioning on each history
        fc = ref.apply(y[:t]).get_forecast(3)
        mean.append(fc.predicted_mean)
        std.append(fc.se_mean)
    mean, std = np.array(mean), np.array(std)
    truth = bt.truth[..., 0]
    for level in (80, 95):
        z = stats.norm.ppf(0.5 + level / 200)
        inside = np.abs(truth - mean) <= z * std
        np.testing.assert_allclose(bt.metrics[f"coverage-{level}"], inside.mean(axis=1))
        np.testing.assert_allclose(bt.metrics[f"width-{level}"], 2 * z * std.mean(axis=1),
                                   rtol=1e-6)
    closed = [M.crps_gaussian(truth[i], mean[i], std[i]) for i in range(len(truth))]
    np.testing.assert_allclose(bt.metrics["crps"], closed, rtol=0.03)  # 20-quantile midpoint rule
    assert abs(bt.summary()["coverage-80"] - 0.8) < 0.08


def test_probabilistic_backtest_bad_input():
    from seqprob.forecasting import Naive, RidgeForecaster

    y = np.sin(np.arange(80.0))
    with pytest.raises(ValueError, match="level: expected interval coverages"):
        Naive().backtest(y, start=60, horizon=2, level=[80, 100])
    with pytest.raises(ValueError, match="level: RidgeForecaster has no predictive"):
        RidgeForecaster(lookback=4).backtest(y, start=60, horizon=2, level=[80])
    with pytest.raises(ValueError, match="levels: expected the quantiles 0.25 and 0.75"):
        M.interval_bounds(np.zeros((2, 3)), [0.1, 0.5, 0.9], 50)

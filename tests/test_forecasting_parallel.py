"""Many-series fits and backtests: dask on a 2-worker local cluster equals the serial loop."""

import numpy as np
import pytest

from seqprob.forecasting import ARIMA, SeasonalNaive, backtest_many, fit_many


def many(n=4, length=80):
    rng = np.random.default_rng(0)
    t = np.arange(length)
    return {f"s{i}": np.sin(2 * np.pi * t / 12 + i) + 0.1 * rng.standard_normal(length)
            for i in range(n)}


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def test_backtest_many_on_dask_equals_serial(client):
    series = many()
    kw = {"start": 60, "horizon": 6, "stride": 6}
    parallel = backtest_many(SeasonalNaive(12), series, client=client, **kw)
    serial = backtest_many(SeasonalNaive(12), series, backend="serial", **kw)
    assert list(parallel) == list(series)
    for key in series:
        np.testing.assert_array_equal(parallel[key].predictions, serial[key].predictions)
        assert len(parallel[key].metrics) == 3


def test_fit_many_on_dask_returns_fitted_clones(client):
    series = many(n=2)
    model = ARIMA((1, 0, 0))
    fitted = fit_many(model, series, client=client)
    assert not hasattr(model, "series_")
    for key, y in series.items():
        np.testing.assert_allclose(fitted[key].predict(3), ARIMA((1, 0, 0)).fit(y).predict(3))


def test_fit_many_starts_its_own_local_cluster():
    fitted = fit_many(SeasonalNaive(12), many(n=2), n_workers=2, processes=False)
    assert set(fitted) == {"s0", "s1"}


def test_many_series_bad_input():
    with pytest.raises(TypeError, match="mapping"):
        fit_many(SeasonalNaive(12), [np.zeros(30)], backend="serial")
    with pytest.raises(ValueError, match="backend"):
        fit_many(SeasonalNaive(12), many(), backend="spark")

"""Many-series fits and backtests: dask (a client or a scheduler address) and threads equal the
serial loop; ``backend="auto"`` falls back to threads without dask."""

import importlib.util

import numpy as np
import pytest

from seqprob.forecasting import ARIMA, SeasonalNaive, backtest_many, fit_many, parallel


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


def test_fit_many_on_a_scheduler_address(client):
    address = client.scheduler.address
    fitted = fit_many(SeasonalNaive(12), many(n=2), client=address)
    for key, y in many(n=2).items():
        np.testing.assert_array_equal(fitted[key].predict(3), SeasonalNaive(12).fit(y).predict(3))


def test_threads_equal_serial_and_auto_uses_threads_without_dask(monkeypatch):
    series = many()
    kw = {"start": 60, "horizon": 6, "stride": 6}
    threads = backtest_many(ARIMA((1, 0, 0)), series, backend="threads", n_workers=3, **kw)
    serial = backtest_many(ARIMA((1, 0, 0)), series, backend="serial", **kw)
    for key in series:
        np.testing.assert_array_equal(threads[key].predictions, serial[key].predictions)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real(name, *a))
    assert parallel.resolve_backend("auto") == "threads"
    assert parallel.resolve_backend("auto", client="tcp://host:8786") == "dask"
    fitted = fit_many(SeasonalNaive(12), series)  # auto, now on threads
    np.testing.assert_array_equal(fitted["s1"].predict(2),
                                  SeasonalNaive(12).fit(series["s1"]).predict(2))


def test_many_series_bad_input():
    with pytest.raises(TypeError, match="mapping"):
        fit_many(SeasonalNaive(12), [np.zeros(30)], backend="serial")
    with pytest.raises(ValueError, match="backend"):
        fit_many(SeasonalNaive(12), many(), backend="spark")
    with pytest.raises(ValueError, match="client"):
        fit_many(SeasonalNaive(12), many(), backend="threads", client="tcp://host:8786")
    with pytest.raises(TypeError, match="client"):
        fit_many(SeasonalNaive(12), many(), backend="dask", client=3)

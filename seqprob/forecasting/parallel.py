"""Fit and backtest one forecaster over many series, in parallel with dask or serially.

``backend="dask"`` (the default) uses the given ``dask.distributed.Client`` or starts a local
cluster for the call (``n_workers`` workers, closed afterwards); ``backend="serial"`` is a
plain loop that needs no dask. dask is imported only on the dask path (``seqprob[dask]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sklearn.base import clone

from seqprob.core.validation import check_choice, check_int
from seqprob.forecasting.base import Backtest, Forecaster


def _fit_one(forecaster: Forecaster, y: Any) -> Forecaster:
    return clone(forecaster).fit(y)


def _backtest_one(forecaster: Forecaster, y: Any, kwargs: dict[str, Any]) -> Backtest:
    return forecaster.backtest(y, **kwargs)


@contextlib.contextmanager
def _dask_client(client: Any, n_workers: int, processes: bool) -> Iterator[Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("backend='dask' needs dask.distributed: pip install 'seqprob[dask]' "
                          "(or pass backend='serial')") from None
    if client is not None:
        yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                      dashboard_address=":0") as cluster, Client(cluster) as own:
        yield own


def _map(fn: Callable, series: Mapping[Any, Any], extra: tuple, backend: str, client: Any,
         n_workers: int, processes: bool) -> dict[Any, Any]:
    if not isinstance(series, Mapping) or not series:
        raise TypeError(f"series: expected a non-empty mapping of name -> series, got "
                        f"{type(series).__name__}")
    check_choice(backend, "backend", ("dask", "serial"))
    if backend == "serial":
        return {key: fn(extra[0], y, *extra[1:]) for key, y in series.items()}
    check_int(n_workers, "n_workers", minimum=1)
    with _dask_client(client, n_workers, processes) as c:
        model = c.scatter(extra[0], broadcast=True)
        futures = {key: c.submit(fn, model, y, *extra[1:], pure=False)
                   for key, y in series.items()}
        return dict(zip(futures, c.gather(list(futures.values())), strict=True))


def fit_many(forecaster: Forecaster, series: Mapping[Any, Any], *, backend: str = "dask",
             client: Any = None, n_workers: int = 2, processes: bool = True
             ) -> dict[Any, Forecaster]:
    """A clone of ``forecaster`` fitted on each series of ``series`` (name -> series)."""
    return _map(_fit_one, series, (forecaster,), backend, client, n_workers, processes)


def backtest_many(forecaster: Forecaster, series: Mapping[Any, Any], *, start: int,
                  horizon: int, stride: int = 1, refit: bool | int = False,
                  backend: str = "dask", client: Any = None, n_workers: int = 2,
                  processes: bool = True) -> dict[Any, Backtest]:
    """:meth:`Forecaster.backtest` of ``forecaster`` on each series (name -> Backtest)."""
    kwargs = {"start": start, "horizon": horizon, "stride": stride, "refit": refit}
    return _map(_backtest_one, series, (forecaster, kwargs), backend, client, n_workers,
                processes)

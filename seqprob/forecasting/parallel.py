"""Fit and backtest one forecaster over many series: on dask, on threads, or serially.

``backend="auto"`` (the default) runs on dask when ``dask.distributed`` is installed
(``seqprob[dask]``) and on a thread pool otherwise. ``backend="dask"`` uses ``client`` — a
``dask.distributed.Client`` or a scheduler address such as ``"tcp://10.0.0.5:8786"`` — or
starts a local cluster for the call (``n_workers`` workers, closed afterwards);
``backend="threads"`` runs ``n_workers`` threads in this process (statsmodels, numpy and torch
release the GIL in their heavy parts); ``backend="serial"`` is a plain loop. dask is imported
only on the dask path.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sklearn.base import clone

from seqprob.core.validation import check_choice, check_int, describe
from seqprob.forecasting.base import Backtest, Forecaster

BACKENDS = ("auto", "dask", "threads", "serial")


def _fit_one(forecaster: Forecaster, y: Any) -> Forecaster:
    return clone(forecaster).fit(y)


def _backtest_one(forecaster: Forecaster, y: Any, kwargs: dict[str, Any]) -> Backtest:
    return forecaster.backtest(y, **kwargs)


def resolve_backend(backend: str, client: Any = None) -> str:
    """The backend ``"auto"`` stands for: dask when installed (or a client given), else threads."""
    check_choice(backend, "backend", BACKENDS)
    if backend != "auto":
        return backend
    if client is not None or importlib.util.find_spec("distributed") is not None:
        return "dask"
    return "threads"


@contextlib.contextmanager
def _dask_client(client: Any, n_workers: int, processes: bool) -> Iterator[Any]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("backend='dask' needs dask.distributed: pip install 'seqprob[dask]' "
                          "(or pass backend='threads')") from None
    if isinstance(client, str):
        with Client(client) as remote:
            yield remote
        return
    if client is not None:
        if not isinstance(client, Client):
            raise TypeError(f"client: expected a dask.distributed.Client or a scheduler "
                            f"address string, got {describe(client)}")
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
    backend = resolve_backend(backend, client)
    if client is not None and backend != "dask":
        raise ValueError(f"client: only the dask backend takes a client, got backend="
                         f"{backend!r}")
    if backend == "serial":
        return {key: fn(extra[0], y, *extra[1:]) for key, y in series.items()}
    check_int(n_workers, "n_workers", minimum=1)
    if backend == "threads":
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = {key: pool.submit(fn, extra[0], y, *extra[1:])
                       for key, y in series.items()}
            return {key: f.result() for key, f in futures.items()}
    with _dask_client(client, n_workers, processes) as c:
        model = c.scatter(extra[0], broadcast=True)
        futures = {key: c.submit(fn, model, y, *extra[1:], pure=False)
                   for key, y in series.items()}
        return dict(zip(futures, c.gather(list(futures.values())), strict=True))


def fit_many(forecaster: Forecaster, series: Mapping[Any, Any], *, backend: str = "auto",
             client: Any = None, n_workers: int = 2, processes: bool = True
             ) -> dict[Any, Forecaster]:
    """A clone of ``forecaster`` fitted on each series of ``series`` (name -> series)."""
    return _map(_fit_one, series, (forecaster,), backend, client, n_workers, processes)


def backtest_many(forecaster: Forecaster, series: Mapping[Any, Any], *, start: int,
                  horizon: int, stride: int = 1, refit: bool | int = False,
                  backend: str = "auto", client: Any = None, n_workers: int = 2,
                  processes: bool = True) -> dict[Any, Backtest]:
    """:meth:`Forecaster.backtest` of ``forecaster`` on each series (name -> Backtest)."""
    kwargs = {"start": start, "horizon": horizon, "stride": stride, "refit": refit}
    return _map(_backtest_one, series, (forecaster, kwargs), backend, client, n_workers,
                processes)

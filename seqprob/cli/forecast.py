"""``seqprob forecast``: fit a forecaster on a CSV or NetCDF series, write forecasts and a plot.

CSV input: a time column (``--time-column``, default the first column) and one numeric column
per channel. NetCDF input: a Dataset whose variables are 1-D over ``time``. Forecasts (and
quantiles, ``<column>_q<level>``) are written in the output's format (.csv or .nc).
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from seqprob.cli.files import input_file, output_file, read_csv
from seqprob.cli.table import format_table
from seqprob.core import resolve_device
from seqprob.core.persist import atomic_path
from seqprob.forecasting import (
    ARIMA,
    BACKBONES,
    ETS,
    AutoTimesForecaster,
    Naive,
    NeuralForecaster,
    PyroForecaster,
    RidgeForecaster,
    SeasonalNaive,
    Theta,
    plot_forecast,
)
from seqprob.forecasting.backbones import SSM_BACKBONE_NAMES
from seqprob.forecasting.training import BudgetWarning

NEURAL = (*BACKBONES, *SSM_BACKBONE_NAMES)
MODELS = ("naive", "snaive", "arima", "ets", "theta", "ridge", "pyro", "autotimes", *NEURAL)


def build_model(args: argparse.Namespace):
    """The forecaster named by ``args.model`` configured from the command-line flags."""
    m = args.season_length
    device = str(resolve_device(args.device))
    neural = {"lookback": args.lookback, "output_length": args.horizon,
              "max_epochs": args.epochs, "device": device, "verbose": not args.quiet,
              "random_state": args.seed,
              "quantiles": tuple(args.quantiles) if args.quantiles else None}
    factories = {
        "naive": Naive,
        "snaive": lambda: SeasonalNaive(m),
        "arima": lambda: ARIMA(tuple(args.order)),
        "ets": lambda: ETS(trend="add", damped_trend=True),
        "theta": lambda: Theta(period=m if m > 1 else None),
        "ridge": lambda: RidgeForecaster(args.lookback, args.horizon),
        "pyro": lambda: PyroForecaster(m, num_steps=args.epochs * 50, random_state=args.seed),
        "autotimes": lambda: AutoTimesForecaster(
            args.lm, segment_length=args.segment_length, lookback=args.lookback,
            max_epochs=args.epochs, max_steps=args.max_steps,
            max_seconds=args.max_seconds or None, device=device,
            random_state=args.seed, verbose=not args.quiet),
        **{name: (lambda name=name: NeuralForecaster(name, **neural)) for name in NEURAL},
    }
    return factories[args.model]()


def read_series(source: Path, time_column: str | None, columns: list[str] | None):
    """A wide DataFrame (CSV) or an xarray Dataset (NetCDF) restricted to ``columns``."""
    if source.suffix in (".nc", ".nc4", ".netcdf"):
        import xarray as xr

        try:
            data = xr.load_dataset(source)
        except (ValueError, OSError) as err:
            raise ValueError(f"input: {str(source)!r} is not a readable NetCDF file: {err}"
                             ) from None
        return data[_present(columns, list(data.data_vars))] if columns else data
    frame = read_csv(source)
    time_column = time_column or frame.columns[0]
    if time_column not in frame.columns:
        raise ValueError(f"--time-column: expected one of {list(frame.columns)}, got "
                         f"{time_column!r}")
    frame.index = _time_index(frame.pop(time_column))
    return frame[_present(columns, list(frame.columns))] if columns else frame


def _present(columns: list[str], available: list[str]) -> list[str]:
    missing = sorted(set(columns) - set(available))
    if missing:
        raise ValueError(f"--columns: {missing} not in the file's columns {available}")
    return columns


def _time_index(column: pd.Series) -> pd.Index:
    """Integer steps as they are, anything else parsed as dates."""
    if pd.api.types.is_integer_dtype(column):
        return pd.Index(column, name="time")
    try:
        return pd.DatetimeIndex(pd.to_datetime(column), name="time")
    except (ValueError, TypeError) as err:
        raise ValueError(f"--time-column: column {column.name!r} holds neither integers nor "
                         f"dates: {' '.join(str(err).split())}") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("forecast", help="fit a forecaster on a CSV/NetCDF series",
                              description=__doc__)
    p.add_argument("input", type=input_file, help="CSV or NetCDF (.nc) file")
    p.add_argument("--time-column", help="CSV time column (default: the first column)")
    p.add_argument("--columns", nargs="+", help="channels to forecast (default: all)")
    p.add_argument("--model", choices=MODELS, default="snaive", help="the forecaster")
    p.add_argument("--horizon", type=int, default=24, help="steps to forecast")
    p.add_argument("--lookback", type=int, default=96, help="ridge and neural models")
    p.add_argument("--season-length", type=int, default=24,
                   help="steps per season (snaive, theta, pyro, backtest MASE)")
    p.add_argument("--order", type=int, nargs=3, default=(1, 1, 1), metavar=("P", "D", "Q"),
                   help="ARIMA order")
    p.add_argument("--epochs", type=int, default=10, help="neural epochs (pyro: x50 SVI steps)")
    p.add_argument("--quantiles", type=float, nargs="+", help="e.g. 0.1 0.5 0.9")
    p.add_argument("--backtest", type=int, metavar="START",
                   help="also backtest from row START (per-window metrics printed)")
    p.add_argument("--stride", type=int, default=24, help="backtest stride")
    p.add_argument("--refit", action="store_true", help="backtest: refit at every window")
    p.add_argument("--output", type=output_file, help="forecast file (.csv or .nc; default: "
                   "print the forecast)")
    p.add_argument("--plot", type=output_file,
                   help="PNG file plotting every forecast channel (choose them with --columns)")
    p.add_argument("--lm", default="smollm2-135m",
                   help="autotimes: the frozen LLM (seqprob.lm.load name or local folder)")
    p.add_argument("--segment-length", type=int, default=24,
                   help="autotimes: rows per segment; --lookback must be a multiple")
    p.add_argument("--max-steps", type=int, help="autotimes: at most this many training steps")
    p.add_argument("--max-seconds", type=float, default=300.0,
                   help="autotimes: fewer training steps (with a warning) when the first "
                        "step's time says they would take longer; 0 lifts the cap")
    p.add_argument("--device", default="cpu", help="neural models: cpu, cuda, cuda:N or auto")
    p.add_argument("--seed", type=int, default=0, help="random seed of the neural and pyro models")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _naming_the_cap_flag() -> Iterator[None]:
    """Warnings pass through; a :class:`BudgetWarning` also names the flag that lifts it."""
    with warnings.catch_warnings():  # restores showwarning afterwards
        show = warnings.showwarning

        def hinted(message, category, *where):
            if issubclass(category, BudgetWarning):
                message = f"{message}; --max-seconds 0 lifts the cap"
            show(message, category, *where)

        warnings.showwarning = hinted
        warnings.simplefilter("always", BudgetWarning)
        yield


def run(args) -> int:
    with _naming_the_cap_flag():
        return _run(args)


def _run(args) -> int:
    data = as_output_type(read_series(args.input, args.time_column, args.columns), args.output)
    model = build_model(args)
    if args.backtest is not None:
        bt = model.backtest(data, start=args.backtest, horizon=args.horizon,
                            stride=args.stride, refit=args.refit,
                            season_length=args.season_length)
        summary = bt.summary()
        print(f"backtest of {args.model}: {len(bt.metrics)} windows from row {args.backtest}")
        print(format_table(list(summary.index), [list(summary.to_numpy())]))
        if args.output:
            with atomic_path(args.output.with_suffix(".backtest.csv")) as tmp:
                bt.metrics.to_csv(tmp, index=False)
    model.fit(data)
    forecast = model.predict(args.horizon)
    quantiles = (model.predict_quantiles(args.horizon, args.quantiles)
                 if args.quantiles else None)
    if args.output:
        write_forecast(args.output, forecast, quantiles)
        print(f"forecast written to {args.output}")
    if args.plot:
        band = _band(quantiles, args.quantiles) if quantiles is not None else {}
        with atomic_path(args.plot) as tmp:
            plot_forecast(data, forecast, path=tmp, title=f"{args.model} forecast",
                          max_channels=_n_channels(data), **band)
        print(f"plot written to {args.plot}")
    if not args.output:
        print(forecast)
    return 0


def _band(quantiles, levels: list[float]) -> dict:
    """The outermost quantiles as lower/upper, in the forecast's type."""
    lo, hi = min(levels), max(levels)
    if lo == hi:
        return {}
    if isinstance(quantiles, pd.DataFrame):
        return {"lower": quantiles.xs(lo, level="quantile", axis=1),
                "upper": quantiles.xs(hi, level="quantile", axis=1),
                "interval_label": f"{lo:g}-{hi:g} quantiles"}
    return {"lower": quantiles.sel(quantile=lo), "upper": quantiles.sel(quantile=hi),
            "interval_label": f"{lo:g}-{hi:g} quantiles"}


def _n_channels(data) -> int:
    return len(data.data_vars) if hasattr(data, "data_vars") else data.shape[1]


def _netcdf(path: Path | None) -> bool:
    return path is not None and Path(path).suffix in (".nc", ".nc4", ".netcdf")


def as_output_type(data, output: Path | None):
    """The series as an xarray Dataset for NetCDF output, else as a wide DataFrame."""
    import xarray as xr

    if _netcdf(output) and isinstance(data, pd.DataFrame):
        return xr.Dataset.from_dataframe(data)
    if not _netcdf(output) and isinstance(data, xr.Dataset):
        return data.to_dataframe()
    return data


def write_forecast(path: Path, forecast, quantiles) -> None:
    """CSV: one column per channel plus ``<channel>_q<level>``; NetCDF: the point forecasts
    plus ``<channel>_quantiles`` over (time, quantile). Written atomically."""
    with atomic_path(path) as tmp:
        _write_forecast(tmp, forecast, quantiles)


def _write_forecast(path: Path, forecast, quantiles) -> None:
    if _netcdf(path):
        if quantiles is not None:
            forecast = forecast.merge(quantiles.rename({k: f"{k}_quantiles"
                                                        for k in quantiles.data_vars}))
        forecast.to_netcdf(path)
        return
    if quantiles is not None:
        quantiles = quantiles.copy()
        quantiles.columns = [f"{c}_q{q:g}" for c, q in quantiles.columns]
        forecast = forecast.join(quantiles)
    forecast.to_csv(path, index_label="time")

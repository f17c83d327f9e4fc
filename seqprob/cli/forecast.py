"""``seqprob forecast``: fit a forecaster on a CSV or NetCDF series, write forecasts and a plot.

CSV input: a time column (``--time-column``, default the first column) and one numeric column
per channel. NetCDF input: a Dataset whose variables are 1-D over ``time``. Forecasts (and
quantiles, ``<column>_q<level>``) are written in the output's format (.csv or .nc).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from seqprob.cli.table import format_table
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

NEURAL = (*BACKBONES, *SSM_BACKBONE_NAMES)
MODELS = ("naive", "snaive", "arima", "ets", "theta", "ridge", "pyro", "autotimes", *NEURAL)


def build_model(args: argparse.Namespace):
    """The forecaster named by ``args.model`` configured from the command-line flags."""
    m = args.season_length
    neural = {"lookback": args.lookback, "output_length": args.horizon,
              "max_epochs": args.epochs, "device": args.device, "verbose": not args.quiet,
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
            max_epochs=args.epochs, max_steps=args.max_steps, device=args.device,
            random_state=args.seed, verbose=not args.quiet),
        **{name: (lambda name=name: NeuralForecaster(name, **neural)) for name in NEURAL},
    }
    return factories[args.model]()


def read_series(path: str, time_column: str | None, columns: list[str] | None):
    """A wide DataFrame (CSV) or an xarray Dataset (NetCDF) restricted to ``columns``."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"input: no file at {path!r}")
    if source.suffix in (".nc", ".nc4", ".netcdf"):
        import xarray as xr

        data = xr.load_dataset(source)
        return data[columns] if columns else data
    frame = pd.read_csv(source)
    time_column = time_column or frame.columns[0]
    if time_column not in frame.columns:
        raise ValueError(f"--time-column: expected one of {list(frame.columns)}, got "
                         f"{time_column!r}")
    index = frame.pop(time_column)
    frame.index = (pd.DatetimeIndex(pd.to_datetime(index), name="time")
                   if not pd.api.types.is_integer_dtype(index) else pd.Index(index, name="time"))
    if columns:
        missing = sorted(set(columns) - set(frame.columns))
        if missing:
            raise ValueError(f"--columns: {missing} not in the file's columns "
                             f"{list(frame.columns)}")
        frame = frame[columns]
    return frame


def register(subparsers) -> None:
    p = subparsers.add_parser("forecast", help="fit a forecaster on a CSV/NetCDF series",
                              description=__doc__)
    p.add_argument("input", help="CSV or NetCDF (.nc) file")
    p.add_argument("--time-column", help="CSV time column (default: the first column)")
    p.add_argument("--columns", nargs="+", help="channels to forecast (default: all)")
    p.add_argument("--model", choices=MODELS, default="snaive")
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--lookback", type=int, default=96, help="ridge and neural models")
    p.add_argument("--season-length", type=int, default=24)
    p.add_argument("--order", type=int, nargs=3, default=(1, 1, 1), metavar=("P", "D", "Q"),
                   help="ARIMA order")
    p.add_argument("--epochs", type=int, default=10, help="neural epochs (pyro: x50 SVI steps)")
    p.add_argument("--quantiles", type=float, nargs="+", help="e.g. 0.1 0.5 0.9")
    p.add_argument("--backtest", type=int, metavar="START",
                   help="also backtest from row START (per-window metrics printed)")
    p.add_argument("--stride", type=int, default=24, help="backtest stride")
    p.add_argument("--refit", action="store_true", help="backtest: refit at every window")
    p.add_argument("--output", help="forecast file (.csv or .nc)")
    p.add_argument("--plot", help="PNG file for the forecast plot")
    p.add_argument("--lm", default="smollm2-135m",
                   help="autotimes: the frozen LLM (seqprob.lm.load name or local folder)")
    p.add_argument("--segment-length", type=int, default=24,
                   help="autotimes: rows per segment; --lookback must be a multiple")
    p.add_argument("--max-steps", type=int, help="autotimes: at most this many training steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
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
            bt.metrics.to_csv(Path(args.output).with_suffix(".backtest.csv"), index=False)
    model.fit(data)
    forecast = model.predict(args.horizon)
    quantiles = (model.predict_quantiles(args.horizon, args.quantiles)
                 if args.quantiles else None)
    if args.output:
        write_forecast(args.output, forecast, quantiles)
        print(f"forecast written to {args.output}")
    if args.plot:
        band = _band(quantiles, args.quantiles) if quantiles is not None else {}
        plot_forecast(data, forecast, path=args.plot, title=f"{args.model} forecast", **band)
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


def _netcdf(path: str | None) -> bool:
    return path is not None and Path(path).suffix in (".nc", ".nc4", ".netcdf")


def as_output_type(data, output: str | None):
    """The series as an xarray Dataset for NetCDF output, else as a wide DataFrame."""
    import xarray as xr

    if _netcdf(output) and isinstance(data, pd.DataFrame):
        return xr.Dataset.from_dataframe(data)
    if not _netcdf(output) and isinstance(data, xr.Dataset):
        return data.to_dataframe()
    return data


def write_forecast(path: str, forecast, quantiles) -> None:
    """CSV: one column per channel plus ``<channel>_q<level>``; NetCDF: the point forecasts
    plus ``<channel>_quantiles`` over (time, quantile)."""
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

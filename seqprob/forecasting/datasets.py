"""Data sets shipped with seqprob: ETTh1 and ETTh2 (ETDataset, CC BY-ND 4.0, unmodified)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

ETT_NAMES = ("ETTh1", "ETTh2")


def ett_frame(name: str) -> pd.DataFrame:
    """The ETT table ``name`` as a wide DataFrame on an hourly ``DatetimeIndex`` named time.

    Columns: HUFL, HULL, MUFL, MULL, LUFL, LULL, OT (oil temperature, the usual target);
    17,420 rows. The files and their license notice live in ``seqprob/forecasting/ett``.
    """
    if name not in ETT_NAMES:
        raise ValueError(f"name: expected one of {ETT_NAMES} (shipped with seqprob), got "
                         f"{name!r}")
    source = resources.files("seqprob.forecasting").joinpath("ett").joinpath(f"{name}.csv")
    with source.open() as fh:
        frame = pd.read_csv(fh, parse_dates=["date"], index_col="date")
    frame.index = pd.DatetimeIndex(frame.index, freq="h", name="time")
    return frame


def load_ett(name: str):
    """The ETT table ``name`` as an ``xarray.Dataset``: one variable per column, ``time``."""
    import xarray as xr

    return xr.Dataset.from_dataframe(ett_frame(name))

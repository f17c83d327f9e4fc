"""Series conversion, windows, ETT splits, scaler and the shipped data sets."""

import hashlib
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.forecasting import (
    StandardScaler,
    WindowDataset,
    as_series,
    ett_frame,
    ett_split,
    load_ett,
    segments,
)
from seqprob.forecasting.windows import window_starts

SHA = {"ETTh1": "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
       "ETTh2": "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b"}


def hourly(n=10, channels=("a", "b"), start="2024-01-01"):
    idx = pd.date_range(start, periods=n, freq="h", name="time")
    values = np.arange(n * len(channels), dtype=float).reshape(n, len(channels))
    return pd.DataFrame(values, index=idx, columns=list(channels))


# ---- shipped data ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ETTh1", "ETTh2"])
def test_shipped_ett_files_are_unmodified_with_license(name):
    folder = resources.files("seqprob.forecasting").joinpath("ett")
    data = folder.joinpath(f"{name}.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA[name]
    assert "Attribution-NoDerivatives" in folder.joinpath("LICENSE").read_text()


def test_load_ett_is_an_xarray_dataset_with_time():
    ds = load_ett("ETTh1")
    assert isinstance(ds, xr.Dataset)
    assert list(ds.data_vars) == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert ds.sizes["time"] == 17420
    assert pd.Timestamp(ds.time.values[1]) - pd.Timestamp(ds.time.values[0]) == pd.Timedelta("1h")
    raw = pd.read_csv(str(resources.files("seqprob.forecasting") / "ett" / "ETTh1.csv"))
    np.testing.assert_array_equal(ds["OT"].values, raw["OT"].to_numpy())
    with pytest.raises(ValueError, match="ETTh1"):
        load_ett("ETTm9")


def test_wheel_declares_the_csv_and_license_package_data():
    from pathlib import Path

    import tomllib

    config = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["*"]
    assert "*.csv" in patterns and "LICENSE*" in patterns


# ---- conversion round trips -------------------------------------------------------------
def _inputs():
    frame = hourly()
    long = frame.reset_index().melt(id_vars="time", var_name="unique_id", value_name="y")
    long = long.rename(columns={"time": "ds"})
    da = xr.DataArray(frame.to_numpy(), dims=("time", "channel"),
                      coords={"time": frame.index, "channel": ["a", "b"]}, name="v")
    return {"numpy": frame.to_numpy(), "numpy1d": frame["a"].to_numpy(),
            "series": frame["a"], "wide": frame, "long": long, "dataarray": da,
            "dataarray1d": da.sel(channel="a", drop=True),
            "dataset": xr.Dataset.from_dataframe(frame)}


@pytest.mark.parametrize("kind", list(_inputs()))
def test_wrap_returns_the_input_type_and_continues_time(kind):
    y = _inputs()[kind]
    s = as_series(y)
    future = s.future_index(3)
    out = s.wrap(np.full((3, s.n_channels), 7.0), future)
    assert type(out) is type(y)
    back = as_series(out)
    np.testing.assert_array_equal(back.values, np.full((3, s.n_channels), 7.0))
    if kind.startswith("numpy"):
        assert out.shape[0] == 3
    else:
        assert back.index[0] == pd.Timestamp("2024-01-01 10:00")
        assert back.index.freqstr == "h"
        assert back.columns == s.columns


@pytest.mark.parametrize("kind", list(_inputs()))
def test_values_are_read_in_time_by_channel_order(kind):
    s = as_series(_inputs()[kind])
    np.testing.assert_array_equal(s.values[:, 0], np.arange(0, 20, 2.0))
    if s.n_channels == 2:
        np.testing.assert_array_equal(s.values[:, 1], np.arange(1, 20, 2.0))


def test_quantiles_and_samples_shapes_per_type():
    inputs = _inputs()
    q = np.zeros((3, 2, 2))
    levels = np.array([0.1, 0.9])
    s = as_series(inputs["wide"])
    out = s.wrap_quantiles(q, s.future_index(3), levels)
    assert out.columns.tolist() == [("a", 0.1), ("a", 0.9), ("b", 0.1), ("b", 0.9)]
    s = as_series(inputs["long"])
    out = s.wrap_quantiles(q, s.future_index(3), levels)
    assert out.columns.tolist() == ["unique_id", "ds", "q0.1", "q0.9"] and len(out) == 6
    s = as_series(inputs["dataarray"])
    out = s.wrap_quantiles(q, s.future_index(3), levels)
    assert out.dims == ("time", "channel", "quantile")
    samples = np.zeros((5, 3, 2))
    assert as_series(inputs["dataset"]).wrap_samples(samples, s.future_index(3))["a"].dims == (
        "sample", "time")
    assert len(as_series(inputs["wide"]).wrap_samples(samples, s.future_index(3))) == 30
    assert as_series(inputs["numpy1d"]).wrap_samples(samples[..., :1], s.future_index(3)
                                                     ).shape == (5, 3)


def test_integer_index_continues_at_its_step():
    s = as_series(pd.Series([1.0, 2.0, 3.0], index=[10, 15, 20]))
    assert list(s.future_index(2)) == [25, 30]


# ---- bad input ----------------------------------------------------------------------------
def test_nan_refused_with_positions():
    frame = hourly()
    frame.iloc[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"2024-01-01 04:00:00, 'b'.*rows \[4\]"):
        as_series(frame)
    assert np.isnan(as_series(frame, allow_nan=True).values[4, 1])


def test_duplicated_timestamps_refused():
    frame = hourly()
    frame.index = frame.index[[0, 1, 2, 2, 3, 4, 5, 6, 7, 8]]
    with pytest.raises(ValueError, match="duplicated time stamps"):
        as_series(frame)


def test_irregular_timestamps_refused_with_positions():
    frame = hourly()
    frame.index = frame.index.delete(5).append(pd.DatetimeIndex(["2024-01-01 20:00"]))
    with pytest.raises(ValueError, match=r"usual step is 0 days 01:00:00 .*positions \[5, 9\]"):
        as_series(frame)


def test_unsorted_and_unknown_frequency_refused():
    frame = hourly()
    with pytest.raises(ValueError, match="must increase"):
        as_series(frame.iloc[::-1])
    with pytest.raises(ValueError, match="unknown frequency"):
        as_series(frame.iloc[:2].set_axis(pd.DatetimeIndex(frame.index[:2], freq=None)))


def test_long_frame_with_ragged_ids_refused():
    long = _inputs()["long"].iloc[:-1]
    with pytest.raises(ValueError, match="same ds stamps"):
        as_series(long)


def test_wrong_types_and_shapes_refused():
    with pytest.raises(TypeError, match="numpy array, pandas"):
        as_series({"a": 1})
    with pytest.raises(ValueError, match="1-D"):
        as_series(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="empty"):
        as_series(np.zeros(0))
    with pytest.raises(TypeError, match="numeric"):
        as_series(np.array(["a", "b"]))


# ---- windows, splits, scaler ------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 60), lookback=st.integers(1, 10), horizon=st.integers(1, 10),
       stride=st.integers(1, 7), channels=st.integers(1, 3), independent=st.booleans())
def test_windows_match_brute_force_slicing(n, lookback, horizon, stride, channels, independent):
    values = np.random.default_rng(n).standard_normal((n, channels))
    if n < lookback + horizon:
        with pytest.raises(ValueError, match="lookback \\+ horizon"):
            WindowDataset(values, lookback, horizon, stride=stride)
        return
    data = WindowDataset(values, lookback, horizon, stride=stride,
                         channel_independent=independent)
    starts = list(range(0, n - lookback - horizon + 1, stride))
    expect = []
    for s in starts:
        ctx, tgt = values[s:s + lookback], values[s + lookback:s + lookback + horizon]
        if independent:
            expect += [(ctx[:, [c]], tgt[:, [c]]) for c in range(channels)]
        else:
            expect.append((ctx, tgt))
    assert len(data) == len(expect)
    for i, (ctx, tgt) in enumerate(expect):
        got_ctx, got_tgt = data[i]
        np.testing.assert_allclose(got_ctx.numpy(), ctx, rtol=1e-6)
        np.testing.assert_allclose(got_tgt.numpy(), tgt, rtol=1e-6)


def test_window_starts_count_every_window():
    assert len(window_starts(14400 - 11520 + 336, 336, 96)) == 2880 - 96 + 1


def test_segments_keep_the_most_recent_rows():
    seg = segments(np.arange(10)[:, None], 3)
    assert seg.shape == (3, 3, 1)
    assert seg[-1, :, 0].tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="at least one segment"):
        segments(np.arange(2)[:, None], 3)


def test_ett_split_borders():
    values = np.arange(17420)[:, None]
    train, val, test = ett_split(values, 336)
    assert (train[0, 0], train[-1, 0], len(train)) == (0, 8639, 8640)
    assert (val[0, 0], val[-1, 0]) == (8640 - 336, 11519)
    assert (test[0, 0], test[-1, 0]) == (11520 - 336, 14399)
    big = np.arange(70000)[:, None]
    train, val, test = ett_split(big, 96, freq="m")
    assert (len(train), val[0, 0], test[-1, 0]) == (34560, 34560 - 96, 57599)
    with pytest.raises(ValueError, match="at least 14400 rows"):
        ett_split(values[:100], 96)
    with pytest.raises(ValueError, match="freq"):
        ett_split(values, 96, freq="d")


def test_scaler_fits_train_only_and_inverts():
    train = np.array([[0.0, 5.0], [2.0, 5.0]])
    scaler = StandardScaler().fit(train)
    np.testing.assert_allclose(scaler.mean_, [1.0, 5.0])
    np.testing.assert_allclose(scaler.scale_, [1.0, 1.0])  # constant channel: scale 1
    x = np.array([[3.0, 7.0]])
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(x)), x)
    with pytest.raises(ValueError, match="2 channels"):
        scaler.transform(np.zeros((1, 3)))


def test_ett_frame_columns():
    frame = ett_frame("ETTh2")
    assert frame.index.freqstr == "h" and frame.shape == (17420, 7)

"""`seqprob forecast`, plots and the demo's forecasting section."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

import seqprob
from seqprob.cli import main
from seqprob.forecasting import SeasonalNaive, ett_frame, plot_forecast


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "ett.csv"
    ett_frame("ETTh1").iloc[:200].reset_index().rename(columns={"time": "date"}).to_csv(
        path, index=False)
    return path


def test_forecast_cli_writes_csv_with_quantiles_and_a_plot(csv, tmp_path, capsys):
    out, png = tmp_path / "f.csv", tmp_path / "f.png"
    code = main(["forecast", str(csv), "--columns", "OT", "HUFL", "--model", "snaive",
                 "--horizon", "12", "--quantiles", "0.1", "0.9", "--backtest", "150",
                 "--stride", "12", "--output", str(out), "--plot", str(png)])
    assert code == 0
    frame = pd.read_csv(out, index_col="time", parse_dates=True)
    assert list(frame.columns) == ["OT", "HUFL", "OT_q0.1", "OT_q0.9", "HUFL_q0.1", "HUFL_q0.9"]
    assert frame.index[0] == pd.Timestamp("2016-07-09 08:00")  # row 200 of the hourly file
    expect = ett_frame("ETTh1")["OT"].to_numpy()[176:188]
    np.testing.assert_allclose(frame["OT"], expect)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "backtest of snaive: 4 windows" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "f.backtest.csv")) == 4


def test_forecast_cli_netcdf_in_and_out(tmp_path):
    src, out = tmp_path / "in.nc", tmp_path / "out.nc"
    xr.Dataset.from_dataframe(ett_frame("ETTh2").iloc[:120][["OT"]]).to_netcdf(src)
    assert main(["forecast", str(src), "--model", "dlinear", "--lookback", "24",
                 "--horizon", "6", "--epochs", "1", "--quantiles", "0.2", "0.8", "--quiet",
                 "--output", str(out)]) == 0
    ds = xr.load_dataset(out)
    assert ds["OT"].sizes["time"] == 6 and ds["OT_quantiles"].dims == ("time", "quantile")


def test_forecast_cli_errors(csv, capsys):
    assert main(["forecast", str(csv), "--columns", "nope"]) == 2
    assert "--columns" in capsys.readouterr().err
    assert main(["forecast", str(csv), "--horizon", "0"]) == 2
    assert "horizon" in capsys.readouterr().err
    assert main(["forecast", "/no/such.csv"]) == 2


def test_plot_forecast_draws_history_forecast_band_and_truth(tmp_path):
    y = ett_frame("ETTh1")[["OT", "HUFL"]].iloc[:100]
    model = SeasonalNaive(24).fit(y.iloc[:88])
    q = model.predict_quantiles(12, [0.1, 0.9])
    fig = plot_forecast(y.iloc[:88], model.predict(12), truth=y.iloc[88:],
                        lower=q.xs(0.1, level="quantile", axis=1),
                        upper=q.xs(0.9, level="quantile", axis=1), path=tmp_path / "p.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["history", "truth", "forecast"]
    assert len(fig.axes[0].collections) == 1  # the band
    assert (tmp_path / "p.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="both or neither"):
        plot_forecast(y, model.predict(12), lower=q.xs(0.1, level="quantile", axis=1))
    with pytest.raises(ValueError, match="2 channels"):
        plot_forecast(y, model.predict(12)["OT"])


def _table(out: str) -> list[str]:
    """Model names of the demo's forecasting table, best first."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = lines[head + 2:]
    return [line.split("  ")[0] for line in rows[:next(i for i, line in enumerate(rows)
                                                         if line.startswith("best: "))]]


@pytest.mark.slow
def test_demo_forecasting_section_leads_with_a_model_of_ours(capsys, tmp_path, monkeypatch):
    from seqprob.cli.demo import OURS, forecasting_tour

    monkeypatch.chdir(tmp_path)
    forecasting_tour(quiet=True)
    names = _table(capsys.readouterr().out)
    assert len(names) == 8 and names[0] in OURS
    assert (tmp_path / "seqprob-demo-forecast.png").exists()


def test_demo_forecasting_section_with_a_tiny_budget(capsys, tmp_path, monkeypatch):
    from seqprob.cli import demo
    from seqprob.forecasting import Naive, NeuralForecaster, SeasonalNaive

    monkeypatch.chdir(tmp_path)
    tiny = NeuralForecaster("sparse", lookback=336, output_length=96, max_epochs=1,
                            max_batches_per_epoch=1, verbose=False)
    monkeypatch.setattr(demo, "demo_models", lambda quiet: {
        "sparse (SparseLinear)": tiny, "seasonal naive (24 h)": SeasonalNaive(24),
        "naive": Naive()})
    demo.forecasting_tour(quiet=True)
    out = capsys.readouterr().out
    names = _table(out)
    assert sorted(names) == ["naive", "seasonal naive (24 h)", "sparse (SparseLinear)"]
    verdict = "a seqprob model" if names[0] in demo.OURS else "a baseline"
    assert f"best: {names[0]}, {verdict}" in out
    assert (tmp_path / "seqprob-demo-forecast.png").stat().st_size > 1000


def test_forecast_plot_draws_every_channel(csv, tmp_path, monkeypatch):
    drawn = []

    def recording(*args, **kwargs):
        figure = plot_forecast(*args, **kwargs)
        drawn.append(len(figure.axes))
        return figure

    monkeypatch.setattr("seqprob.cli.forecast.plot_forecast", recording)
    png = tmp_path / "all.png"
    assert main(["forecast", str(csv), "--horizon", "6", "--plot", str(png)]) == 0
    assert drawn == [7] and png.read_bytes()[:4] == b"\x89PNG"  # ETTh1's 7 channels
    assert main(["forecast", str(csv), "--horizon", "6", "--columns", "OT", "HUFL",
                 "--plot", str(png)]) == 0
    assert drawn[-1] == 2 and [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == [
        "all.png"]


def test_plot_forecast_names_the_channels_max_channels_leaves_out():
    y = ett_frame("ETTh1").iloc[:60]  # 7 channels
    model = SeasonalNaive(24).fit(y)
    with pytest.warns(UserWarning, match=r"plotting the first 4 of 7 channels; 3 left out "
                      r"\(LUFL, LULL, OT\); raise max_channels"):
        fig = plot_forecast(y, model.predict(6))
    assert [ax.get_ylabel() for ax in fig.axes] == list(y.columns[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(plot_forecast(y, model.predict(6), max_channels=7).axes) == 7


ROOT = os.path.dirname(os.path.dirname(seqprob.__file__))


def test_importing_forecasting_leaves_pyro_and_matplotlib_for_later():
    code = ("import sys, seqprob.forecasting; "
            "print(sorted(m for m in ('pyro', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.stdout.strip() == "[]"

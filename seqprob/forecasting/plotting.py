"""Forecast plots with matplotlib's object API (no pyplot state; PNGs via the Agg canvas)."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from seqprob.core.validation import check_int
from seqprob.forecasting.series import as_series

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_forecast(history: Any, forecast: Any, *, lower: Any = None, upper: Any = None,
                  truth: Any = None, interval_label: str = "interval",
                  max_history: int | None = 336, max_channels: int = 4,
                  title: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """One panel per channel: the history's tail, the forecast, an optional band
    ``[lower, upper]`` and the optional ``truth``; any accepted series type for each.

    The first ``max_channels`` channels are drawn (a warning names those left out). Writes a
    PNG to ``path`` when given; returns the figure.
    """
    from matplotlib.figure import Figure

    hist = as_series(history, "history")
    pred = as_series(forecast, "forecast")
    if pred.n_channels != hist.n_channels:
        raise ValueError(f"forecast: expected {hist.n_channels} channels like history, got "
                         f"{pred.n_channels}")
    band = None
    if (lower is None) != (upper is None):
        raise ValueError("lower, upper: pass both or neither")
    if lower is not None:
        band = (_aligned(lower, pred, "lower"), _aligned(upper, pred, "upper"))
    real = None if truth is None else as_series(truth, "truth")
    if max_history is not None:
        hist = hist.slice(max(0, len(hist) - check_int(max_history, "max_history", minimum=1)),
                          len(hist))
    n = min(hist.n_channels, check_int(max_channels, "max_channels", minimum=1))
    if n < hist.n_channels:
        left = hist.columns[n:]
        warnings.warn(f"max_channels: plotting the first {n} of {hist.n_channels} channels; "
                      f"{len(left)} left out ({', '.join(map(str, left[:5]))}"
                      f"{', ...' if len(left) > 5 else ''}); raise max_channels to draw them",
                      UserWarning, stacklevel=2)
    fig = Figure(figsize=(9, 2.4 * n + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
    for c, ax in enumerate(axes):
        ax.plot(hist.index, hist.values[:, c], color="0.3", lw=1, label="history")
        if real is not None:
            ax.plot(real.index, real.values[:, c], color="k", lw=1, ls="--", label="truth")
        if band is not None:
            ax.fill_between(pred.index, band[0][:, c], band[1][:, c], color="C0", alpha=0.25,
                            label=interval_label)
        ax.plot(pred.index, pred.values[:, c], color="C0", lw=1.5, label="forecast")
        ax.set_ylabel(hist.columns[c])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize="small", ncols=4)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _aligned(values: Any, pred, name: str) -> np.ndarray:
    series = as_series(values, name)
    if series.values.shape != pred.values.shape:
        raise ValueError(f"{name}: expected shape {pred.values.shape} like forecast, got "
                         f"{series.values.shape}")
    return series.values

"""Forecasting: data, the Forecaster API, models, metrics, backtests and the ETT benchmark.

Every model follows :class:`Forecaster` (scikit-learn style ``fit(y, X=None)``,
``predict(horizon)``, ``predict_quantiles``, ``predict_samples``, ``backtest``, ``save``/
``load``) over numpy, pandas (wide or long ``unique_id/ds/y``) and xarray inputs.
"""

from seqprob.forecasting import metrics
from seqprob.forecasting.auto import AutoARIMA, AutoETS
from seqprob.forecasting.autotimes import AutoTimesForecaster
from seqprob.forecasting.backbones import BACKBONES, DLinear, Linear
from seqprob.forecasting.base import Backtest, Forecaster
from seqprob.forecasting.baselines import Naive, SeasonalNaive
from seqprob.forecasting.datasets import ett_frame, load_ett
from seqprob.forecasting.evaluation import evaluate_ett, evaluate_ett_horizons
from seqprob.forecasting.linear import RidgeForecaster
from seqprob.forecasting.neural import NeuralForecaster
from seqprob.forecasting.panels import Panel
from seqprob.forecasting.parallel import backtest_many, fit_many
from seqprob.forecasting.plotting import plot_forecast
from seqprob.forecasting.probabilistic import PyroForecaster
from seqprob.forecasting.series import Series, as_series
from seqprob.forecasting.statistical import ARIMA, ETS, Theta
from seqprob.forecasting.windows import StandardScaler, WindowDataset, ett_split, segments


def __getattr__(name: str):
    # the sktime adapter subclasses sktime's BaseForecaster: import it only when asked for (it
    # stays out of __all__, so a star import or the API reference never needs sktime)
    if name == "SktimeForecaster":
        try:
            from seqprob.forecasting.sktime_adapter import SktimeForecaster
        except ModuleNotFoundError as err:
            if err.name is None or not err.name.startswith("sktime"):
                raise
            raise ImportError("SktimeForecaster needs sktime: pip install 'seqprob[sktime]'"
                              ) from None
        return SktimeForecaster
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARIMA",
    "BACKBONES",
    "ETS",
    "AutoARIMA",
    "AutoETS",
    "AutoTimesForecaster",
    "Backtest",
    "DLinear",
    "Forecaster",
    "Linear",
    "Naive",
    "NeuralForecaster",
    "Panel",
    "PyroForecaster",
    "RidgeForecaster",
    "SeasonalNaive",
    "Series",
    "StandardScaler",
    "Theta",
    "WindowDataset",
    "as_series",
    "backtest_many",
    "ett_frame",
    "ett_split",
    "evaluate_ett",
    "evaluate_ett_horizons",
    "fit_many",
    "load_ett",
    "metrics",
    "plot_forecast",
    "segments",
]

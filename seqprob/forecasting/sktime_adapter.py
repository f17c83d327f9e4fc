"""Any seqprob forecaster as an sktime ``BaseForecaster`` (needs ``seqprob[sktime]``).

sktime owns the time index (relative and absolute ``fh``, cutoffs, panels by vectorization);
the wrapped forecaster sees plain arrays: ``fit`` on the rows so far, then one forecast of
``max(fh)`` steps from which the requested steps are taken. ``predict_interval`` and
``predict_quantiles`` are available when the wrapped model forecasts any quantile level
(``supports_quantiles`` or ``supports_samples``); exogenous ``X`` when it takes covariates.
``update(update_params=False)`` conditions on the new rows with the fitted parameters
(:meth:`Forecaster.update`); ``update_params=True`` refits on everything seen.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import clone
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from seqprob.core.validation import describe
from seqprob.forecasting.base import Forecaster


class SktimeForecaster(BaseForecaster):
    """sktime forecaster around ``forecaster`` (an unfitted seqprob :class:`Forecaster`).

    Fitted attribute ``forecaster_``: the clone fitted by sktime's ``fit`` (and ``update``).

    Examples
    --------
    >>> from sktime.datasets import load_airline
    >>> from seqprob.forecasting import SktimeForecaster, Theta
    >>> forecaster = SktimeForecaster(Theta(period=12)).fit(load_airline())
    >>> forecaster.predict(fh=[1, 2, 3]).index.astype(str).tolist()
    ['1961-01', '1961-02', '1961-03']
    """

    _tags: ClassVar[dict[str, Any]] = {
        "authors": "seqprob",
        "maintainers": "seqprob",
        "y_inner_mtype": "pd.DataFrame",
        "X_inner_mtype": "pd.DataFrame",
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:non_contiguous_X": False,  # covariates for every step up to max(fh)
        "capability:insample": False,
        "capability:pred_int": False,
        "capability:pred_int:insample": False,
        "capability:missing_values": False,
        "capability:update": True,
        "requires-fh-in-fit": False,
        "X-y-must-have-same-index": True,
        "fit_is_empty": False,
    }

    def __init__(self, forecaster: Forecaster):
        self.forecaster = forecaster
        with warnings.catch_warnings():  # the adapter sets remember_data=True explicitly below
            warnings.filterwarnings("ignore", message=".*remember_data", category=FutureWarning)
            super().__init__()
        if not isinstance(forecaster, Forecaster):
            raise TypeError(f"forecaster: expected a seqprob Forecaster, got "
                            f"{describe(forecaster)}")
        self.set_config(remember_data=True)  # _update reads everything seen from self._y
        self.set_tags(**{
            "capability:exogenous": bool(forecaster.supports_covariates),
            "capability:pred_int": bool(forecaster.supports_quantiles
                                        or forecaster.supports_samples),
        })

    # ---- sktime's private interface ----------------------------------------------------
    def _fit(self, y: pd.DataFrame, X: pd.DataFrame | None, fh: Any) -> SktimeForecaster:
        self.forecaster_ = clone(self.forecaster).fit(y.to_numpy(np.float64), _array(X))
        return self

    def _update(self, y: pd.DataFrame, X: pd.DataFrame | None = None, update_params=True
                ) -> SktimeForecaster:
        seen = len(self.forecaster_.series_)
        if update_params:
            return self._fit(self._y, self._X, None)
        new_y = self._y.iloc[seen:]
        if len(new_y):
            new_x = None if self._X is None else self._X.iloc[seen: seen + len(new_y)]
            self.forecaster_.update(new_y.to_numpy(np.float64), _array(new_x))
        return self

    def _predict(self, fh: ForecastingHorizon, X: pd.DataFrame | None) -> pd.DataFrame:
        steps, horizon, future = self._plan(fh, X)
        values = self.forecaster_.predict(horizon, X=future)[steps - 1]
        return pd.DataFrame(values, index=fh.to_absolute_index(self.cutoff),
                            columns=self._get_columns("predict"))

    def _predict_quantiles(self, fh: ForecastingHorizon, X: pd.DataFrame | None,
                           alpha: list[float]) -> pd.DataFrame:
        steps, horizon, future = self._plan(fh, X)
        values = self.forecaster_.predict_quantiles(horizon, alpha, X=future)[steps - 1]
        return pd.DataFrame(values.reshape(len(steps), -1),
                            index=fh.to_absolute_index(self.cutoff),
                            columns=self._get_columns("predict_quantiles", alpha=alpha))

    def _plan(self, fh: ForecastingHorizon, X: pd.DataFrame | None
              ) -> tuple[np.ndarray, int, np.ndarray | None]:
        """``(steps ahead (k,) counted from 1, max step, covariates (max step, k) or None)``."""
        steps = np.asarray(fh.to_relative(self.cutoff).to_numpy(), dtype=np.int64)
        horizon = int(steps.max())
        if self.forecaster_.X_ is None:
            return steps, horizon, None
        ahead = ForecastingHorizon(np.arange(1, horizon + 1), is_relative=True, freq=fh.freq)
        stamps = ahead.to_absolute_index(self.cutoff)
        missing = [] if X is None else stamps.difference(X.index)
        if X is None or len(missing):
            raise ValueError(f"X: the wrapped {type(self.forecaster).__name__} was fitted with "
                             f"covariates, so predict needs them for every step from "
                             f"{stamps[0]} to {stamps[-1]}; missing "
                             f"{list(stamps if X is None else missing)[:5]}")
        return steps, horizon, X.loc[stamps].to_numpy(np.float64)

    @classmethod
    def get_test_params(cls, parameter_set: str = "default") -> list[dict[str, Any]]:
        """Two cheap wrapped models: ARIMA (covariates, Gaussian intervals) and naive."""
        from seqprob.forecasting.baselines import Naive
        from seqprob.forecasting.statistical import ARIMA

        return [{"forecaster": ARIMA((1, 0, 0))}, {"forecaster": Naive()}]


def _array(X: pd.DataFrame | None) -> np.ndarray | None:
    return None if X is None else X.to_numpy(np.float64)

"""A Bayesian structural forecaster in pyro: local level + seasonality + Student-t noise.

The model (per channel, on the z-scored series):

    level_t = level_{t-1} + N(0, level_scale)          (local level, a random walk)
    y_t     = init + level_t + season[t mod m] + StudentT(df, 0, noise_scale)

trained by stochastic variational inference (``pyro.contrib.forecast.Forecaster`` with an
``AutoNormal`` guide); forecasts are joint sample paths. pyro is imported on first use, so
importing :mod:`seqprob.forecasting` does not import it.
"""

from __future__ import annotations

import functools
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from seqprob.core.persist import register
from seqprob.forecasting.base import Forecaster
from seqprob.forecasting.windows import StandardScaler


@functools.cache
def level_seasonal_model() -> type:
    """The ``LevelSeasonalModel`` class (a ``pyro.contrib.forecast.ForecastingModel``),
    defined on first use."""
    import pyro
    import pyro.distributions as dist
    from pyro.contrib.forecast import ForecastingModel
    from pyro.ops.tensor_utils import periodic_repeat

    class LevelSeasonalModel(ForecastingModel):
        """Local level + periodic seasonality + heavy-tailed noise (see the module docstring)."""

        def __init__(self, season_length: int):
            super().__init__()
            self.season_length = season_length

        def model(self, zero_data, covariates):
            duration, dim = zero_data.shape[-2:]
            init = pyro.sample("init", dist.Normal(0.0, 3.0).expand([dim]).to_event(1))
            level_scale = pyro.sample("level_scale",
                                      dist.LogNormal(-3.0, 1.0).expand([dim]).to_event(1))
            season = pyro.sample("season", dist.Normal(0.0, 1.0)
                                 .expand([self.season_length, dim]).to_event(2))
            df = pyro.sample("df", dist.LogNormal(1.5, 0.5).expand([dim]).to_event(1))
            noise_scale = pyro.sample("noise_scale",
                                      dist.LogNormal(-1.0, 1.0).expand([dim]).to_event(1))
            with self.time_plate:
                jumps = pyro.sample("jumps", dist.Normal(0.0, level_scale).to_event(1))  # (T, C)
            level = jumps.cumsum(-2)  # (T, C)
            if season.dim() > 2:  # forecasting: (samples, 1, m, C), the 1 being the time plate
                season = season.squeeze(-3)
            seasonal = periodic_repeat(season, duration, dim=-2)  # ([samples,] T, C)
            # global sites are (C,), or (samples, 1, C) when forecasting: both broadcast over time
            self.predict(dist.StudentT(df, 0.0, noise_scale), init + level + seasonal)

    return LevelSeasonalModel


@register
class PyroForecaster(Forecaster):
    """Probabilistic forecasts (samples, quantiles) from the local level + seasonal model
    (:func:`level_seasonal_model`).

    season_length : period of the seasonal component; num_steps, learning_rate : SVI.
    The latent level path belongs to the fitted series, so forecasts start where that series
    ends: backtest it with ``refit=True``.
    """

    supports_samples = True
    supports_update = False
    _parameter_constraints: ClassVar[dict] = {
        "season_length": [Interval(Integral, 1, None, closed="left")],
        "num_steps": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "n_point_samples": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(self, season_length: int = 24, *, num_steps: int = 500,
                 learning_rate: float = 0.05, n_point_samples: int = 200,
                 random_state: int | None = 0):
        self.season_length = season_length
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.n_point_samples = n_point_samples
        self.random_state = random_state

    def _min_history(self) -> int:
        return 2 * self.season_length

    def _svi(self, data: torch.Tensor, num_steps: int) -> Any:
        """A ``pyro.contrib.forecast.Forecaster`` trained ``num_steps`` SVI steps."""
        import pyro
        from pyro.contrib.forecast import Forecaster as PyroSVIForecaster

        covariates = torch.zeros(len(data), 0)
        seed = 0 if self.random_state is None else self.random_state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pyro.clear_param_store()
            return PyroSVIForecaster(level_seasonal_model()(self.season_length), data, covariates,
                                     learning_rate=self.learning_rate, num_steps=num_steps,
                                     log_every=0)

    def _fit(self, y, X, y_val):
        self.scaler_ = StandardScaler().fit(y.values)
        self.data_ = torch.as_tensor(self.scaler_.transform(y.values), dtype=torch.float32)
        self.svi_ = self._svi(self.data_, self.num_steps)
        self.losses_ = list(self.svi_.losses)

    def _check_same(self, history: np.ndarray) -> None:
        if history is not self.series_.values:
            raise ValueError("history: a PyroForecaster's latent level path belongs to the "
                             "series it was fitted on, so it forecasts only after that series; "
                             "use backtest(..., refit=True)")

    def _forecast_samples(self, history, horizon, n_samples, rng, X_hist, X_future):
        self._check_same(history)
        covariates = torch.zeros(len(self.data_) + horizon, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**31)))
            with torch.no_grad():
                samples = self.svi_(self.data_, covariates, num_samples=n_samples)
        return self.scaler_.inverse_transform(samples.double().numpy())  # (S, H, C)

    def _forecast(self, history, horizon, X_hist, X_future):
        samples = self._forecast_samples(history, horizon, self.n_point_samples,
                                         np.random.default_rng(self.random_state), X_hist,
                                         X_future)
        return np.median(samples, axis=0)

    def _forecast_batch(self, contexts, horizon):
        raise ValueError("contexts: a PyroForecaster forecasts only after the series it was "
                         "fitted on (its latent level path); fit it on each series instead")

    def _get_state(self):
        tensors = {f"guide.{k}": v for k, v in self.svi_.guide.state_dict().items()}
        tensors["scaler.mean"] = torch.tensor(self.scaler_.mean_)
        tensors["scaler.scale"] = torch.tensor(self.scaler_.scale_)
        return tensors, {}

    def _set_state(self, tensors, state):
        self.scaler_ = StandardScaler()
        self.scaler_.mean_ = tensors["scaler.mean"].numpy()
        self.scaler_.scale_ = tensors["scaler.scale"].numpy()
        self.data_ = torch.as_tensor(self.scaler_.transform(self.series_.values),
                                     dtype=torch.float32)
        self.svi_ = self._svi(self.data_, 0)
        with torch.random.fork_rng(devices=[]):
            self.svi_.guide(self.data_, torch.zeros(len(self.data_), 0))  # build parameters
        self.svi_.guide.load_state_dict({k.removeprefix("guide."): v for k, v in tensors.items()
                                         if k.startswith("guide.")})
        self.losses_ = []

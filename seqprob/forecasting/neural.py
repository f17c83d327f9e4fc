"""Neural forecasters with a pluggable backbone ``nn.Module``.

:class:`NeuralForecaster` cuts (lookback, output_length) windows from the z-scored history,
wraps the backbone in optional RevIN-style instance normalization and trains point (MSE) and
optional quantile (pinball) outputs with the shared loop (:func:`~seqprob.forecasting.
training.train`: Adam, early stopping on validation windows, best weights kept). Backbones
are named in :data:`~seqprob.forecasting.backbones.BACKBONES` or passed as
a class with the backbone constructor signature.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor, nn

from seqprob.core.constraints import DeviceString
from seqprob.core.device import resolve_device
from seqprob.core.persist import register
from seqprob.forecasting.backbones import BACKBONES, SSM_BACKBONE_NAMES, backbone_class
from seqprob.forecasting.base import Forecaster, check_levels, renamed_horizon
from seqprob.forecasting.covariates import CovariateHead
from seqprob.forecasting.training import train
from seqprob.forecasting.windows import StandardScaler, WindowDataset


class ForecastNetwork(nn.Module):
    """Backbone plus instance normalization: ``(B, L, C) -> (B, H, C, 1 + n_quantiles)``.

    With a :class:`~seqprob.forecasting.covariates.CovariateHead`, the covariates of each
    window ``(B, L + H, k)`` add their linear effect to the de-normalized outputs.

    With ``revin`` each context is standardized by its own mean and standard deviation over
    time, and the outputs are mapped back (Kim et al., ICLR 2022, without the affine part).
    A backbone may define ``forward_with_loss(x) -> (out, auxiliary_loss)`` (SpaceTime's
    next-step terms, say): ``training_forward`` then returns that auxiliary loss, computed on
    the normalized context, for the training loop to add.
    """

    def __init__(self, backbone: nn.Module, revin: bool, eps: float = 1e-5,
                 covariates: CovariateHead | None = None):
        super().__init__()
        self.backbone, self.revin, self.eps = backbone, revin, eps
        self.covariates = covariates

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.revin:
            return torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, C)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)  # (B, 1, C)
        return mean, std

    def forward(self, x: Tensor, cov: Tensor | None = None) -> Tensor:
        """``x (B, L, C)``, covariates ``cov (B, L + H, k)`` -> ``(B, H, C, O)``."""
        mean, std = self._stats(x)
        out = self.backbone((x - mean) / std)  # (B, H, C, O)
        return self._output(out, mean, std, cov)

    def training_forward(self, x: Tensor, cov: Tensor | None = None
                         ) -> tuple[Tensor, Tensor | None]:
        """``(outputs (B, H, C, O), auxiliary loss or None)``."""
        if not hasattr(self.backbone, "forward_with_loss"):
            return self.forward(x, cov), None
        mean, std = self._stats(x)
        out, aux = self.backbone.forward_with_loss((x - mean) / std)
        return self._output(out, mean, std, cov), aux

    def _output(self, out: Tensor, mean: Tensor, std: Tensor, cov: Tensor | None) -> Tensor:
        out = out * std.unsqueeze(-1) + mean.unsqueeze(-1)  # (B, H, C, O)
        if (cov is None) != (self.covariates is None):
            expected = "none" if cov is not None else "(batch, lookback + H, k)"
            raise ValueError(f"cov: expected covariates {expected} for this network, got "
                             f"{None if cov is None else tuple(cov.shape)}")
        return out if cov is None else out + self.covariates(cov)


def pinball_loss(target: Tensor, quantiles: Tensor, levels: Tensor) -> Tensor:
    """Mean pinball loss of ``quantiles (..., Q)`` for ``target (...)`` at ``levels (Q,)``."""
    diff = target.unsqueeze(-1) - quantiles
    return torch.maximum(levels * diff, (levels - 1) * diff).mean()


POINT_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}


@register
class NeuralForecaster(Forecaster):
    """A neural forecaster with a pluggable backbone.

    Parameters
    ----------
    backbone : a name in ``BACKBONES`` ("linear", "dlinear", "sparse", "mlp") or
        ``SSM_BACKBONE_NAMES`` ("spacetime", "mamba", "s4", "s4d"), or a backbone class.
    backbone_kwargs : extra keyword arguments of the backbone.
    lookback, output_length : context length and the trained output length (rows the
        network emits at once; ``predict(horizon)`` rolls out longer horizons).
        ``horizon=`` is the deprecated name of ``output_length``.
    channel_independent : each channel is its own sample sharing the weights (PatchTST /
        DLinear style); False feeds all channels together.
    revin : instance normalization of each context.
    quantiles : None (point only) or levels in (0, 1) for a quantile head.
    loss : the point output's training loss, "mse", "mae" or "huber" (early stopping always
        uses the validation MSE).
    validation_fraction : share of the history held out for early stopping when ``fit`` gets
        no ``y_val`` (0 disables early stopping); ``patience`` epochs without a better
        validation MSE stop training.
    max_batches_per_epoch : None (every training window each epoch) or a cap: each epoch
        draws that many random batches (a CPU budget).
    validation_stride : early stopping scores every ``validation_stride``-th validation
        window (all channels of each); 1 scores them all.
    device : "cpu", "cuda", "auto".

    Covariates ``X`` (``fit(y, X)``, ``predict(horizon, X=future rows)``) add a linear term
    (:class:`~seqprob.forecasting.covariates.CovariateHead`) over the lookback's and the
    forecast steps' covariates, z-scored on the training rows; with ``channel_independent``
    its weights are shared by the channels like the backbone's.

    After ``fit``: ``network_``, ``scaler_``, ``x_scaler_`` (None without covariates),
    ``history_`` (one ``{"epoch", "step", "train_loss", "val_mse"}`` per epoch: the learning
    curve), ``best_val_mse_``.
    """

    supports_covariates = True
    _parameter_constraints: ClassVar[dict] = {
        "backbone": [StrOptions({*BACKBONES, *SSM_BACKBONE_NAMES}), type],
        "backbone_kwargs": [dict, None],
        "lookback": [Interval(Integral, 1, None, closed="left")],
        "output_length": [Interval(Integral, 1, None, closed="left")],
        "channel_independent": ["boolean"],
        "revin": ["boolean"],
        "quantiles": ["array-like", None],
        "loss": [StrOptions(set(POINT_LOSSES))],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "max_batches_per_epoch": [Interval(Integral, 1, None, closed="left"), None],
        "validation_stride": [Interval(Integral, 1, None, closed="left")],
        "device": [DeviceString()],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "verbose": ["verbose"],
    }

    def __init__(self, backbone: Any = "dlinear", *, backbone_kwargs: dict | None = None,
                 lookback: int = 96, output_length: int = 24, channel_independent: bool = True,
                 revin: bool = True, quantiles: Any = None, loss: str = "mse",
                 max_epochs: int = 20,
                 batch_size: int = 256, learning_rate: float = 1e-3, weight_decay: float = 0.0,
                 patience: int = 3, validation_fraction: float = 0.2,
                 max_batches_per_epoch: int | None = None, validation_stride: int = 1,
                 device: str = "cpu",
                 random_state: int | None = 0, verbose: bool = True, **deprecated):
        self.backbone = backbone
        self.backbone_kwargs = backbone_kwargs
        self.lookback = lookback
        self.output_length = renamed_horizon(output_length, deprecated, type(self).__name__)
        self.channel_independent = channel_independent
        self.revin = revin
        self.quantiles = quantiles
        self.loss = loss
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.max_batches_per_epoch = max_batches_per_epoch
        self.validation_stride = validation_stride
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ---- construction ------------------------------------------------------------------
    def _check_params(self) -> None:
        if isinstance(self.backbone, type) and not issubclass(self.backbone, nn.Module):
            raise TypeError(f"backbone: expected a name in {tuple(BACKBONES)} or an nn.Module "
                            f"class, got {self.backbone!r}")
        self._levels()

    def _min_history(self) -> int:
        return self.lookback

    def _min_fit_history(self) -> int:
        return self.lookback + self.output_length

    def _levels(self) -> np.ndarray:
        return np.zeros(0) if self.quantiles is None else np.sort(check_levels(self.quantiles))

    def _build(self, n_channels: int, n_covariates: int) -> ForecastNetwork:
        cls = self.backbone
        if isinstance(cls, str):
            cls = backbone_class(cls)
        width = 1 if self.channel_independent else n_channels
        n_outputs = 1 + len(self._levels())
        seed = 0 if self.random_state is None else self.random_state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(self.lookback, self.output_length, width, n_outputs,
                      **(self.backbone_kwargs or {}))
        head = None if n_covariates == 0 else CovariateHead(
            self.lookback, self.output_length, n_covariates, width, n_outputs)
        return ForecastNetwork(net, self.revin, covariates=head)

    def _split(self, values: np.ndarray, val: np.ndarray | None, X: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(train rows, validation rows, their covariates)``; validation rows start
        ``lookback`` early so that the first validation target follows the training rows."""
        fraction, out = self.validation_fraction, self.output_length
        if val is not None and X is not None:
            raise ValueError("y_val: with covariates X, early stopping holds out the end of y "
                             "(validation_fraction), since fit takes no covariates for y_val; "
                             "pass y_val=None")
        if val is not None or fraction == 0:
            return values, val, X, None
        n_val = round(len(values) * fraction)
        train_end = len(values) - n_val
        span = self.lookback + out
        if train_end < span or n_val < out:
            raise ValueError(f"y: with validation_fraction={fraction}, {len(values)} steps leave "
                             f"{train_end} for training and {n_val} for validation; need at "
                             f"least lookback + output_length = {span} and output_length = "
                             f"{out}. Pass a longer series, y_val, or validation_fraction=0")
        start = train_end - self.lookback
        if X is None:
            return values[:train_end], values[start:], None, None
        return values[:train_end], values[start:], X[:train_end], X[start:]

    # ---- training ----------------------------------------------------------------------
    def _fit(self, y, X, y_val):
        train_rows, val_rows, train_x, val_x = self._split(
            y.values, None if y_val is None else y_val.values, X)
        self.scaler_ = StandardScaler().fit(train_rows)
        self.x_scaler_ = None if X is None else StandardScaler().fit(train_x)
        dev = resolve_device(self.device)
        data = self._windows(train_rows, train_x, 1)
        val_data = None if val_rows is None else self._windows(val_rows, val_x,
                                                               self.validation_stride)
        self.n_channels_ = y.n_channels
        self.network_ = self._build(self.n_channels_, 0 if X is None else X.shape[1]).to(dev)
        levels = torch.as_tensor(self._levels(), dtype=torch.float32, device=dev)

        def loss(items: Tensor) -> Tensor:
            context, target, cov = self._batch(data, items, dev)
            out, aux = self.network_.training_forward(context, cov)
            value = self._loss(out, target, levels)
            return value if aux is None else value + aux

        run = train(self.network_, loss, torch.arange(len(data[0])), batch_size=self.batch_size,
                    max_epochs=self.max_epochs, learning_rate=self.learning_rate,
                    weight_decay=self.weight_decay,
                    max_batches_per_epoch=self.max_batches_per_epoch,
                    validate=None if val_data is None else lambda: self._evaluate(val_data, dev),
                    patience=self.patience, seed=self.random_state, verbose=self.verbose,
                    desc=f"{type(self).__name__}({self._backbone_name()})")
        self.history_, self.best_val_mse_ = run.history, run.best_val_mse

    def _backbone_name(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else self.backbone.__name__

    def _loss(self, out: Tensor, target: Tensor, levels: Tensor) -> Tensor:
        loss = POINT_LOSSES[self.loss](out[..., 0], target)
        if len(levels):
            loss = loss + pinball_loss(target, out[..., 1:], levels)
        return loss

    def _windows(self, rows: np.ndarray, x_rows: np.ndarray | None, stride: int
                 ) -> tuple[WindowDataset, WindowDataset | None]:
        """Windows of the z-scored rows and, with covariates, of theirs (all columns)."""
        data = WindowDataset(self.scaler_.transform(rows), self.lookback, self.output_length,
                             stride=stride, channel_independent=self.channel_independent)
        cov = None if x_rows is None else WindowDataset(
            self.x_scaler_.transform(x_rows), self.lookback, self.output_length, stride=stride)
        return data, cov

    def _batch(self, data: tuple[WindowDataset, WindowDataset | None], items: Tensor,
               dev: torch.device) -> tuple[Tensor, Tensor, Tensor | None]:
        """Contexts ``(B, L, c)``, targets ``(B, H, c)``, covariates ``(B, L + H, k)``."""
        context, target = data[0].batch(items)
        cov = None
        if data[1] is not None:
            windows = items // self.n_channels_ if self.channel_independent else items
            cov = torch.cat(data[1].batch(windows), dim=1).to(dev)
        return context.to(dev), target.to(dev), cov

    def _evaluate(self, data: tuple[WindowDataset, WindowDataset | None], dev: torch.device
                  ) -> float:
        """Point MSE over every window of ``data`` (on the scaled data)."""
        total, count = 0.0, 0
        for idx in torch.arange(len(data[0])).split(1024):
            context, target, cov = self._batch(data, idx, dev)
            total += ((self.network_(context, cov)[..., 0] - target) ** 2).sum().item()
            count += target.numel()
        return total / count

    # ---- forecasting -------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, contexts: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
        """Network outputs ``(N, output_length, C, O)`` for contexts ``(N, >= lookback, C)``
        and, with covariates, their windows ``(N, lookback + output_length, k)``."""
        scaled = self.scaler_.transform(contexts[:, -self.lookback:])  # (N, L, C)
        x = torch.as_tensor(scaled, dtype=torch.float32)
        n, length, c = x.shape
        if self.channel_independent:
            x = x.transpose(1, 2).reshape(n * c, length, 1)
        chunks = x.split(1024)
        covs = [None] * len(chunks)
        if covariates is not None:
            cov = torch.as_tensor(self.x_scaler_.transform(covariates), dtype=torch.float32)
            if self.channel_independent:
                cov = cov.repeat_interleave(c, dim=0)  # (N C, L + H, k), as x's rows
            covs = cov.split(1024)
        dev = next(self.network_.parameters()).device
        out = torch.cat([self.network_(chunk.to(dev), None if w is None else w.to(dev)).cpu()
                         for chunk, w in zip(chunks, covs, strict=True)])
        if self.channel_independent:
            out = out.reshape(n, c, self.output_length, -1).transpose(1, 2)  # (N, H, C, O)
        out = out.double().numpy()
        return out * self.scaler_.scale_[:, None] + self.scaler_.mean_[:, None]

    def _forecast_batch(self, contexts, horizon, covariates=None):
        """Roll the trained output length forward until ``horizon`` steps are covered;
        ``covariates (N, lookback + horizon', k)`` cover the context and at least the
        ``horizon`` steps (:meth:`_covariate_windows`)."""
        contexts = contexts[:, -self.lookback:]
        span = self.lookback + self.output_length
        pieces, done = [], 0
        while done < horizon:
            cov = None if covariates is None else covariates[:, done: done + span]
            step = self._run(contexts, cov)[..., 0]  # (N, H, C)
            pieces.append(step)
            contexts = np.concatenate([contexts, step], axis=1)[:, -self.lookback:]
            done += self.output_length
        return np.concatenate(pieces, axis=1)[:, :horizon]

    def _covariate_windows(self, X_hist: np.ndarray | None, X_future: np.ndarray | None,
                           horizon: int) -> np.ndarray | None:
        """``(1, lookback + H', k)``: the context's covariates, then ``X_future``'s rows
        repeated past the horizon to whole output lengths ``H'`` (the causal mask keeps those
        extra rows from touching the steps that are kept)."""
        if X_future is None:
            return None
        rows = -(-horizon // self.output_length) * self.output_length
        future = np.pad(X_future, ((0, rows - horizon), (0, 0)), mode="edge")
        return np.concatenate([X_hist[-self.lookback:], future])[None]

    def _forecast(self, history, horizon, X_hist, X_future):
        cov = self._covariate_windows(X_hist, X_future, horizon)
        return self._forecast_batch(history[None], horizon, cov)[0]

    def _forecast_quantiles(self, history, horizon, levels, X_hist, X_future):
        trained = self._levels()
        pos = [int(np.flatnonzero(np.isclose(trained, q))[0]) if np.isclose(trained, q).any()
               else -1 for q in levels]
        if -1 in pos:
            raise ValueError(f"quantiles: this forecaster was trained for levels "
                             f"{trained.tolist()} (the quantiles parameter), got "
                             f"{levels.tolist()}")
        if horizon > self.output_length:
            raise ValueError(f"horizon: quantile forecasts reach at most the trained "
                             f"output_length {self.output_length}, got {horizon}")
        cov = self._covariate_windows(X_hist, X_future, horizon)
        out = self._run(history[None], cov)[0, :horizon]  # (H, C, O)
        quantiles = np.sort(out[..., 1:], axis=-1)  # no crossing
        return quantiles[..., pos]

    # ---- persistence -------------------------------------------------------------------
    def to(self, device):
        if hasattr(self, "network_"):
            self.network_.to(resolve_device(device))
        return self

    def _get_state(self):
        tensors = {f"net.{k}": v for k, v in self.network_.state_dict().items()}
        tensors["scaler.mean"] = torch.tensor(self.scaler_.mean_)
        tensors["scaler.scale"] = torch.tensor(self.scaler_.scale_)
        if self.x_scaler_ is not None:
            tensors["x_scaler.mean"] = torch.tensor(self.x_scaler_.mean_)
            tensors["x_scaler.scale"] = torch.tensor(self.x_scaler_.scale_)
        return tensors, {"n_channels": self.n_channels_, "best_val_mse": self.best_val_mse_}

    def _set_state(self, tensors, state):
        self.n_channels_ = state["n_channels"]
        self.best_val_mse_ = state["best_val_mse"]
        self.scaler_ = _scaler(tensors, "scaler")
        self.x_scaler_ = _scaler(tensors, "x_scaler") if "x_scaler.mean" in tensors else None
        n_covariates = 0 if self.x_scaler_ is None else len(self.x_scaler_.mean_)
        self.network_ = self._build(self.n_channels_, n_covariates)
        self.network_.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items()})
        self.network_.eval()


def _scaler(tensors: dict[str, Tensor], prefix: str) -> StandardScaler:
    """The StandardScaler saved under ``<prefix>.mean``/``.scale`` (popped from ``tensors``)."""
    scaler = StandardScaler()
    scaler.mean_ = tensors.pop(f"{prefix}.mean").numpy()
    scaler.scale_ = tensors.pop(f"{prefix}.scale").numpy()
    return scaler


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

from seqprob.core.device import resolve_device
from seqprob.core.persist import register
from seqprob.forecasting.backbones import BACKBONES, SSM_BACKBONE_NAMES, backbone_class
from seqprob.forecasting.base import Forecaster, check_levels, renamed_horizon
from seqprob.forecasting.training import train
from seqprob.forecasting.windows import StandardScaler, WindowDataset


class ForecastNetwork(nn.Module):
    """Backbone plus instance normalization: ``(B, L, C) -> (B, H, C, 1 + n_quantiles)``.

    With ``revin`` each context is standardized by its own mean and standard deviation over
    time, and the outputs are mapped back (Kim et al., ICLR 2022, without the affine part).
    A backbone may define ``forward_with_loss(x) -> (out, auxiliary_loss)`` (SpaceTime's
    next-step terms, say): ``training_forward`` then returns that auxiliary loss, computed on
    the normalized context, for the training loop to add.
    """

    def __init__(self, backbone: nn.Module, revin: bool, eps: float = 1e-5):
        super().__init__()
        self.backbone, self.revin, self.eps = backbone, revin, eps

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.revin:
            return torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, C)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)  # (B, 1, C)
        return mean, std

    def forward(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        out = self.backbone((x - mean) / std)  # (B, H, C, O)
        return out * std.unsqueeze(-1) + mean.unsqueeze(-1)

    def training_forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(outputs (B, H, C, O), auxiliary loss or None)``."""
        if not hasattr(self.backbone, "forward_with_loss"):
            return self.forward(x), None
        mean, std = self._stats(x)
        out, aux = self.backbone.forward_with_loss((x - mean) / std)
        return out * std.unsqueeze(-1) + mean.unsqueeze(-1), aux


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

    After ``fit``: ``network_``, ``scaler_``, ``history_`` (one ``{"epoch", "step",
    "train_loss", "val_mse"}`` per epoch: the learning curve), ``best_val_mse_``.
    """

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
        "device": [str],
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

    def _build(self, n_channels: int) -> ForecastNetwork:
        cls = self.backbone
        if isinstance(cls, str):
            cls = backbone_class(cls)
        width = 1 if self.channel_independent else n_channels
        seed = 0 if self.random_state is None else self.random_state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = cls(self.lookback, self.output_length, width, 1 + len(self._levels()),
                      **(self.backbone_kwargs or {}))
        return ForecastNetwork(net, self.revin)

    def _split(self, values: np.ndarray, val: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
        fraction, out = self.validation_fraction, self.output_length
        if val is not None or fraction == 0:
            return values, val
        n_val = round(len(values) * fraction)
        train_end = len(values) - n_val
        span = self.lookback + out
        if train_end < span or n_val < out:
            raise ValueError(f"y: with validation_fraction={fraction}, {len(values)} steps leave "
                             f"{train_end} for training and {n_val} for validation; need at "
                             f"least lookback + output_length = {span} and output_length = "
                             f"{out}. Pass a longer series, y_val, or validation_fraction=0")
        return values[:train_end], values[train_end - self.lookback:]

    # ---- training ----------------------------------------------------------------------
    def _fit(self, y, X, y_val):
        train_rows, val_rows = self._split(y.values, None if y_val is None else y_val.values)
        self.scaler_ = StandardScaler().fit(train_rows)
        dev = resolve_device(self.device)
        data = WindowDataset(self.scaler_.transform(train_rows), self.lookback,
                             self.output_length, channel_independent=self.channel_independent)
        val_data = None if val_rows is None else WindowDataset(
            self.scaler_.transform(val_rows), self.lookback, self.output_length,
            stride=self.validation_stride, channel_independent=self.channel_independent)
        self.n_channels_ = y.n_channels
        self.network_ = self._build(self.n_channels_).to(dev)
        levels = torch.as_tensor(self._levels(), dtype=torch.float32, device=dev)

        def loss(items: Tensor) -> Tensor:
            context, target = (t.to(dev) for t in data.batch(items))
            out, aux = self.network_.training_forward(context)
            value = self._loss(out, target, levels)
            return value if aux is None else value + aux

        run = train(self.network_, loss, torch.arange(len(data)), batch_size=self.batch_size,
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

    def _evaluate(self, data: WindowDataset, dev: torch.device) -> float:
        """Point MSE over every window of ``data`` (on the scaled data)."""
        total, count = 0.0, 0
        for idx in torch.arange(len(data)).split(1024):
            context, target = (t.to(dev) for t in data.batch(idx))
            total += ((self.network_(context)[..., 0] - target) ** 2).sum().item()
            count += target.numel()
        return total / count

    # ---- forecasting -------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, contexts: np.ndarray) -> np.ndarray:
        """Network outputs ``(N, output_length, C, O)`` for contexts ``(N, >= lookback, C)``."""
        scaled = self.scaler_.transform(contexts[:, -self.lookback:])  # (N, L, C)
        x = torch.as_tensor(scaled, dtype=torch.float32)
        n, length, c = x.shape
        if self.channel_independent:
            x = x.transpose(1, 2).reshape(n * c, length, 1)
        dev = next(self.network_.parameters()).device
        out = torch.cat([self.network_(chunk.to(dev)).cpu() for chunk in x.split(1024)])
        if self.channel_independent:
            out = out.reshape(n, c, self.output_length, -1).transpose(1, 2)  # (N, H, C, O)
        out = out.double().numpy()
        return out * self.scaler_.scale_[:, None] + self.scaler_.mean_[:, None]

    def _forecast_batch(self, contexts, horizon):
        """Roll the trained output length forward until ``horizon`` steps are covered."""
        contexts = contexts[:, -self.lookback:]
        pieces, done = [], 0
        while done < horizon:
            step = self._run(contexts)[..., 0]  # (N, H, C)
            pieces.append(step)
            contexts = np.concatenate([contexts, step], axis=1)[:, -self.lookback:]
            done += self.output_length
        return np.concatenate(pieces, axis=1)[:, :horizon]

    def _forecast(self, history, horizon, X_hist, X_future):
        return self._forecast_batch(history[None], horizon)[0]

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
        out = self._run(history[None])[0, :horizon]  # (H, C, O)
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
        return tensors, {"n_channels": self.n_channels_, "best_val_mse": self.best_val_mse_}

    def _set_state(self, tensors, state):
        self.n_channels_ = state["n_channels"]
        self.best_val_mse_ = state["best_val_mse"]
        self.scaler_ = StandardScaler()
        self.scaler_.mean_ = tensors.pop("scaler.mean").numpy()
        self.scaler_.scale_ = tensors.pop("scaler.scale").numpy()
        self.network_ = self._build(self.n_channels_)
        self.network_.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items()})
        self.network_.eval()

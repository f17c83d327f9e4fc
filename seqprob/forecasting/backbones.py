"""Backbones for :class:`~seqprob.forecasting.neural.NeuralForecaster`.

A backbone is an ``nn.Module`` built as ``cls(lookback, horizon, n_channels, n_outputs,
**kwargs)`` that maps a context ``(batch, lookback, n_channels)`` to
``(batch, horizon, n_channels, n_outputs)`` (output 0 is the point forecast, the others are
quantiles). Instance normalization, scaling and training live in the forecaster, so a
backbone is only the map. ``BACKBONES`` names the registered ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.validation import check_int


class _TimeLinear(nn.Module):
    """A linear map over time, shared by the channels or one per channel (``individual``)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int,
                 individual: bool):
        super().__init__()
        self.horizon, self.n_outputs = horizon, n_outputs
        out = horizon * n_outputs
        self.layers = nn.ModuleList(nn.Linear(lookback, out)
                                    for _ in range(n_channels if individual else 1))

    def forward(self, x: Tensor) -> Tensor:
        b, _, c = x.shape
        xt = x.transpose(1, 2)  # (B, C, L)
        if len(self.layers) == 1:
            y = self.layers[0](xt)  # (B, C, H * O)
        else:
            y = torch.stack([layer(xt[:, i]) for i, layer in enumerate(self.layers)], dim=1)
        return y.reshape(b, c, self.horizon, self.n_outputs).transpose(1, 2)  # (B, H, C, O)


class Linear(nn.Module):
    """One linear map from the lookback window to the horizon (the "Linear" of DLinear's paper)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 individual: bool = False):
        super().__init__()
        self.head = _TimeLinear(lookback, horizon, n_channels, n_outputs, individual)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x)  # (B, H, C, O)


class DLinear(nn.Module):
    """DLinear (Zeng et al., AAAI 2023): a moving-average trend and the seasonal remainder,
    each mapped to the horizon by its own linear layer over time, then summed."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 kernel_size: int = 25, individual: bool = False):
        super().__init__()
        self.kernel_size = check_int(kernel_size, "kernel_size", minimum=1)
        self.trend = _TimeLinear(lookback, horizon, n_channels, n_outputs, individual)
        self.seasonal = _TimeLinear(lookback, horizon, n_channels, n_outputs, individual)

    def forward(self, x: Tensor) -> Tensor:
        trend = moving_average(x, self.kernel_size)  # (B, L, C)
        return self.trend(trend) + self.seasonal(x - trend)  # (B, H, C, O)


class MLP(nn.Module):
    """A linear map over time plus a residual one-hidden-layer MLP over time, shared by the
    channels: ``y = W x + V2 dropout(gelu(V1 x))`` per channel."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.horizon, self.n_outputs = horizon, n_outputs
        self.linear = _TimeLinear(lookback, horizon, n_channels, n_outputs, False)
        self.mlp = nn.Sequential(nn.Linear(lookback, check_int(hidden, "hidden", minimum=1)),
                                 nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, horizon * n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        b, _, c = x.shape
        residual = self.mlp(x.transpose(1, 2))  # (B, C, H * O)
        residual = residual.reshape(b, c, self.horizon, self.n_outputs).transpose(1, 2)
        return self.linear(x) + residual  # (B, H, C, O)


class SparseLinear(nn.Module):
    """A linear map across periods (after SparseTSF, Lin et al., ICML 2024).

    Each channel is smoothed by a learned sliding aggregation (a residual convolution over
    ``period`` neighbours), cut into ``period`` phase sub-series of length ``lookback //
    period`` (the oldest ``lookback % period`` rows are dropped), and one linear map shared
    by all phases forecasts each phase's next ``ceil(horizon / period)`` values: about
    ``(lookback / period) * (horizon / period)`` weights, a strong prior for periodic data.
    """

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 period: int = 24):
        super().__init__()
        self.period = check_int(period, "period", minimum=1, maximum=lookback)
        self.n_in = lookback // period
        self.n_out = -(-horizon // period)
        self.horizon, self.n_outputs = horizon, n_outputs
        width = 2 * (period // 2) + 1
        self.aggregate = nn.Conv1d(1, 1, width, padding=width // 2, bias=False)
        self.linear = nn.Linear(self.n_in, self.n_out * n_outputs, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, length, c = x.shape
        s = x.transpose(1, 2).reshape(b * c, 1, length)[..., length - self.n_in * self.period:]
        s = (self.aggregate(s) + s).reshape(b * c, self.n_in, self.period)  # (N, n_in, w)
        y = self.linear(s.transpose(1, 2))  # (N, w, n_out * O)
        y = y.reshape(b, c, self.period, self.n_out, self.n_outputs).transpose(2, 3)
        y = y.reshape(b, c, self.n_out * self.period, self.n_outputs)[:, :, : self.horizon]
        return y.transpose(1, 2)  # (B, H, C, O)


def moving_average(x: Tensor, kernel_size: int) -> Tensor:
    """Centered moving average over time of ``x (B, L, C)``, ends padded by repetition."""
    left = (kernel_size - 1) // 2
    right = kernel_size - 1 - left
    padded = F.pad(x.transpose(1, 2), (left, right), mode="replicate")  # (B, C, L + k - 1)
    return F.avg_pool1d(padded, kernel_size, stride=1).transpose(1, 2)  # (B, L, C)


BACKBONES: dict[str, type[nn.Module]] = {"linear": Linear, "dlinear": DLinear, "mlp": MLP,
                                     "sparse": SparseLinear}

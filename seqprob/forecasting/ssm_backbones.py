"""State-space backbones for :class:`~seqprob.forecasting.neural.NeuralForecaster`:
SpaceTime, Mamba, S4 and S4D from :mod:`seqprob.ssm`, behind the backbone contract
``(batch, lookback, channels) -> (batch, horizon, channels, outputs)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.validation import check_int
from seqprob.ssm import S4, S4D, Mamba, SpaceTime
from seqprob.ssm.checks import check_sequence
from seqprob.ssm.spacetime import PUBLISHED_PREPROCESS


class SpaceTimeBackbone(nn.Module):
    """The SpaceTime network (defaults: the reference's ETT configuration, width 128); its
    closed-loop decoder forecasts the horizon; in training its open-loop next-step and
    next-input terms join the loss (``forward_with_loss``)."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 d_model: int = 128, d_state: int = 64, n_layers: int = 1, n_heads: int = 8,
                 embedding: str = "repeat",
                 preprocess: tuple[str, ...] | list[str] = PUBLISHED_PREPROCESS,
                 dropout: float = 0.25, random_state: int | None = 0):
        super().__init__()
        self.horizon, self.n_channels, self.n_outputs = horizon, n_channels, n_outputs
        self.net = SpaceTime(n_channels, lookback, horizon, d_output=n_channels * n_outputs,
                             d_model=d_model, d_state=d_state, n_layers=n_layers,
                             n_heads=n_heads, embedding=embedding, preprocess=tuple(preprocess),
                             dropout=dropout, random_state=random_state)

    def _split(self, y: Tensor) -> Tensor:
        return y.reshape(*y.shape[:2], self.n_channels, self.n_outputs)  # (B, T, C, O)

    def forward(self, x: Tensor) -> Tensor:
        return self._split(self.net(x).forecast)  # (B, H, C, O)

    def forward_with_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x)
        _, w_next, w_input = self.net.loss_weights
        next_step = self._split(out.next_step)[..., 0]  # (B, L, C): point outputs
        aux = (w_next * F.mse_loss(next_step[:, :-1], x[:, 1:])
               + w_input * F.mse_loss(out.input_pred[:, :-1], out.encoded[:, 1:]))
        return self._split(out.forecast), aux


class _SSMEncoder(nn.Module):
    """Embed the channels, run ``n_layers`` pre-norm residual SSM blocks over the window and
    map the last position's features to the horizon; a linear map over time from the raw
    window is added (``linear_skip``) so the SSM models what a linear forecaster misses."""

    def __init__(self, lookback: int, horizon: int, n_channels: int, n_outputs: int = 1, *,
                 d_model: int = 32, d_state: int = 16, n_layers: int = 2,
                 linear_skip: bool = True, random_state: int | None = 0):
        super().__init__()
        check_int(n_layers, "n_layers", minimum=1)
        self.horizon, self.n_channels, self.n_outputs = horizon, n_channels, n_outputs
        seed = 0 if random_state is None else random_state
        self.embed = nn.Linear(n_channels, d_model)
        self.layers = nn.ModuleList(self._layer(d_model, d_state, lookback, seed + i)
                                    for i in range(n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.head = nn.Linear(d_model, horizon * n_channels * n_outputs)
        self.skip = nn.Linear(lookback, horizon * n_outputs) if linear_skip else None

    def _layer(self, d_model: int, d_state: int, lookback: int, seed: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, L, n_channels)``, checked here once; the layers run unchecked and
        without their final states (``outputs_unchecked``)."""
        check_sequence(x, "x", self.n_channels, None)
        b = x.shape[0]
        h = self.embed(x)  # (B, L, D)
        for layer, norm in zip(self.layers, self.norms, strict=True):
            h = h + layer.outputs_unchecked(norm(h))
        out = self.head(h[:, -1]).reshape(b, self.horizon, self.n_channels, self.n_outputs)
        if self.skip is not None:
            skip = self.skip(x.transpose(1, 2))  # (B, C, H * O)
            out = out + skip.reshape(b, self.n_channels, self.horizon,
                                     self.n_outputs).transpose(1, 2)
        return out  # (B, H, C, O)


class MambaBackbone(_SSMEncoder):
    """Mamba blocks (selective scan) over the window."""

    def _layer(self, d_model, d_state, lookback, seed):
        return Mamba(d_model, d_state, random_state=seed)


class S4Backbone(_SSMEncoder):
    """S4 (DPLR HiPPO-LegS) layers over the window."""

    def _layer(self, d_model, d_state, lookback, seed):
        return S4(d_model, d_state, l_max=lookback, random_state=seed)


class S4DBackbone(_SSMEncoder):
    """S4D (diagonal) layers over the window."""

    def _layer(self, d_model, d_state, lookback, seed):
        return S4D(d_model, d_state, random_state=seed)


SSM_BACKBONES = {"spacetime": SpaceTimeBackbone, "mamba": MambaBackbone, "s4": S4Backbone,
                 "s4d": S4DBackbone}

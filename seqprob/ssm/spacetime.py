"""SpaceTime (Zhang et al., 2023): companion-matrix SSMs for forecasting.

``SpaceTime(d_input, lookback, horizon)`` maps a lookback window ``(batch, lookback,
d_input)`` to a forecast ``(batch, horizon, d_output)``:

1. *Preprocessing SSMs*: fixed companion (FIR) kernels — differencing (``"diff1"``,
   ``"diff2"``) and moving-average residuals (``"ma<w>"``: ``x_t - mean(x_{t-w+1..t})``) —
   applied to every input channel, concatenated with the raw input.
2. *Embedding*: a linear map to ``d_model`` channels.
3. *Encoder*: ``n_layers`` residual blocks ``h + MLP(CompanionSSM(h))``.
4. *Closed-loop decoder*: a companion SSM over the encoded sequence ``z`` whose state
   ``x_t`` gives the open-loop next-step prediction ``C x_t`` and the predicted next input
   ``K x_t``; past the window it feeds its own prediction back, ``x_{t+1} = (A + B K) x_t``,
   so the forecast ``C (A + BK)^{j-1} x_L`` covers any horizon. A linear head maps back to
   ``d_output`` channels.

Training uses :meth:`SpaceTime.loss`: closed-loop horizon MSE + open-loop next-step MSE (in
data space, over the window) + next-step input MSE (``K x_t`` vs ``z_{t+1}``). The model does
not scale data: z-score the series first (the Forecaster does).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.contract import SequenceModel, State
from seqprob.core.persist import Persistable, register
from seqprob.core.validation import check_float, check_int, check_shape
from seqprob.ssm.checks import check_sequence, check_state, check_step_input
from seqprob.ssm.conv_kernels import CompanionKernel, companion_kernel, companion_matrix
from seqprob.ssm.layers import CompanionSSM
from seqprob.ssm.lti import DenseTransition, fft_conv, state_response


def preprocessing_taps(kind: str) -> Tensor:
    """FIR taps of one preprocessing SSM: ``"diff<k>"`` (k-th difference) or ``"ma<w>"``
    (residual of a w-point trailing moving average)."""
    match = re.fullmatch(r"(diff|ma)(\d+)", kind)
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"preprocess: expected entries like 'diff1', 'diff2' or 'ma4', got "
                         f"{kind!r}")
    n = int(match.group(2))
    if match.group(1) == "diff":  # on the CPU even while a checkpoint is checked on "meta"
        taps = torch.tensor([1.0], device="cpu")
        for _ in range(n):
            taps = F.pad(taps, (0, 1)) - F.pad(taps, (1, 0))
        return taps
    return F.pad(torch.ones(1, device="cpu"), (0, n - 1)) - torch.full((n,), 1.0 / n,
                                                                      device="cpu")


@dataclasses.dataclass
class EncoderState(State):
    """Recurrent state of the SpaceTime encoder."""

    preprocess: State | None
    layers: tuple[State, ...]


class EncoderBlock(nn.Module):
    """``h + W2 gelu(W1 ssm(h))`` with a companion SSM over ``d_model`` channels, on inputs
    the encoder has checked."""

    def __init__(self, d_model: int, d_state: int, l_max: int, seed: int | None):
        super().__init__()
        self.ssm = CompanionSSM(d_model, d_state, l_max=l_max, random_state=seed)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(),
                                 nn.Linear(2 * d_model, d_model))

    def forward(self, h: Tensor, state: State | None) -> tuple[Tensor, State]:
        y, state = self.ssm.forward_unchecked(h, state, None)
        return h + self.mlp(y), state

    def outputs(self, h: Tensor) -> Tensor:
        """``forward(h)[0]`` without the final state."""
        return h + self.mlp(self.ssm.outputs_unchecked(h))

    def step(self, h: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self.ssm.step_unchecked(h, state)
        return h + self.mlp(y), state


class SpaceTimeEncoder(SequenceModel):
    """Preprocessing SSMs, embedding and encoder blocks: ``(B, L, d_input)`` -> ``(B, L,
    d_model)``; a sequence model (streaming with ``step``)."""

    def __init__(self, d_input: int, d_model: int, d_state: int, n_layers: int, lookback: int,
                 preprocess: tuple[str, ...], seed: int | None):
        super().__init__()
        self.d_input = d_input
        self.lookback = lookback
        self.preprocess = None
        if preprocess:
            taps = [preprocessing_taps(k) for k in preprocess]
            width = max(len(t) for t in taps)
            bank = torch.stack([F.pad(t, (0, width - len(t))) for t in taps])      # (P W)
            self.preprocess = CompanionSSM(d_input * len(taps), width, l_max=lookback,
                                           taps=bank.repeat_interleave(d_input, 0))
        self.n_views = 1 + len(preprocess)
        self.embed = nn.Linear(d_input * self.n_views, d_model)
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, d_state, lookback, None if seed is None else seed + i)
            for i in range(n_layers))

    def init_state(self, batch_size: int, *, device: Any = None, dtype: Any = None
                   ) -> EncoderState:
        pre = (None if self.preprocess is None
               else self.preprocess.init_state(batch_size, device=device))
        return EncoderState(pre, tuple(b.ssm.init_state(batch_size, device=device)
                                       for b in self.blocks))

    def _checked(self, state: State | None, batch: int, device: Any) -> EncoderState:
        if state is None:
            return self.init_state(batch, device=device)
        return check_state(state, self.init_state(batch, device="meta"), "SpaceTimeEncoder")

    def _views(self, x: Tensor, pre: Tensor | None) -> Tensor:
        """The raw input and its preprocessed copies, ``(..., d_input * n_views)``."""
        return x if pre is None else torch.cat([x, pre], dim=-1)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, EncoderState]:
        check_sequence(x, "x", self.d_input, self.lookback, "lookback")
        state = self._checked(state, x.shape[0], x.device)
        pre_y, pre_state = None, None
        if self.preprocess is not None:
            pre_y, pre_state = self.preprocess.forward_unchecked(
                x.repeat(1, 1, self.n_views - 1), state.preprocess, None)
        h = self.embed(self._views(x, pre_y))
        states = []
        for block, layer_state in zip(self.blocks, state.layers, strict=True):
            h, layer_state = block(h, layer_state)
            states.append(layer_state)
        return h, EncoderState(pre_state, tuple(states))

    def encode(self, x: Tensor) -> Tensor:
        """``forward(x)[0]`` from the zero state, skipping the final states (which cost
        more than the convolutions): ``(B, L, d_input)`` -> ``(B, L, d_model)``."""
        check_sequence(x, "x", self.d_input, self.lookback, "lookback")
        pre = None
        if self.preprocess is not None:
            pre = self.preprocess.outputs_unchecked(x.repeat(1, 1, self.n_views - 1))
        h = self.embed(self._views(x, pre))
        for block in self.blocks:
            h = block.outputs(h)
        return h

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, EncoderState]:
        check_step_input(x_t, "x_t", self.d_input)
        state = self._checked(state, x_t.shape[0], x_t.device)
        pre_y, pre_state = None, None
        if self.preprocess is not None:
            pre_y, pre_state = self.preprocess.step_unchecked(
                x_t.repeat(1, self.n_views - 1), state.preprocess)
        h = self.embed(self._views(x_t, pre_y))
        states = []
        for block, layer_state in zip(self.blocks, state.layers, strict=True):
            h, layer_state = block.step(h, layer_state)
            states.append(layer_state)
        return h, EncoderState(pre_state, tuple(states))


class ClosedLoopDecoder(nn.Module):
    """Companion SSM with outputs ``C`` (next value) and ``K`` (next input, fed back past
    the window). Parameters ``a, b`` and the folded ``C~, K~`` (lengths ``<= l_max``)."""

    def __init__(self, d_model: int, d_state: int, l_max: int, seed: int | None):
        super().__init__()
        self.ssm = CompanionKernel(d_model, d_state, l_max=l_max, random_state=seed)
        gen = torch.Generator().manual_seed(0 if seed is None else seed + 7919)
        self.k_tilde = nn.Parameter(torch.randn(d_model, d_state, generator=gen) / d_state)

    def forward(self, z: Tensor, horizon: int) -> tuple[Tensor, Tensor, Tensor]:
        """``z`` ``(B, L, H)`` -> open-loop ``C x_t`` ``(B, L, H)``, ``K x_t`` ``(B, L, H)``
        and the closed-loop forecast ``(B, horizon, H)``.

        Everything is built from one ``I - A^l_max``: the kernels of ``C``, ``K`` and of the
        state coordinates (``x_L = sum_t A^{L-1-t} b u_t`` from those) by the companion FFT
        algorithm, and the unfolded ``C``, ``K`` of the closed loop."""
        kern = self.ssm
        u = z.mT                                                                  # (B H L)
        length = u.shape[-1]
        fold = kern.fold()                                                        # (H d d)
        outs = torch.stack([kern.c_tilde, self.k_tilde])                           # (2 H d)
        kernels = companion_kernel(kern.a, kern.b, outs, kern.max_length)[..., :length]
        y_open, u_next = fft_conv(u[:, None], kernels).unbind(1)                  # (B H L)
        krylov = kern.krylov(length, fold)                                        # (d H L)
        x_last = torch.einsum("dhl,bhl->bhd", krylov.flip(-1), u)                 # (B H d)
        c, k = kern.unfold(outs, fold)                                            # (H d)
        a = companion_matrix(kern.a)
        loop = DenseTransition(a + kern.b[:, :, None] * k[:, None, :])           # A + B K
        ahead = state_response(loop, c, x_last, horizon - 1)                      # (B H h-1)
        forecast = torch.cat([y_open[..., -1:], ahead], dim=-1)                   # (B H h)
        return y_open.mT, u_next.mT, forecast.mT


@dataclasses.dataclass
class SpaceTimeOutput:
    """What :meth:`SpaceTime.forward` returns (all batch first)."""

    forecast: Tensor    # (batch, horizon, d_output): closed-loop forecast past the window
    next_step: Tensor   # (batch, lookback, d_output): open-loop prediction of position t + 1
    input_pred: Tensor  # (batch, lookback, d_model): decoder's prediction of z_{t+1}
    encoded: Tensor     # (batch, lookback, d_model): encoder output z


@register
class SpaceTime(Persistable):
    """SpaceTime forecaster network; see the module docstring.

    ``forward(x)``: ``x`` ``(batch, length <= lookback, d_input)`` -> :class:`SpaceTimeOutput`;
    ``loss(output, x, y)`` with ``y`` ``(batch, horizon, d_output)`` the true future.
    """

    def __init__(self, d_input: int, lookback: int, horizon: int, *, d_output: int | None = None,
                 d_model: int = 64, d_state: int = 64, n_layers: int = 2,
                 preprocess: tuple[str, ...] | list[str] = ("diff1", "ma4"),
                 loss_weights: tuple[float, float, float] | list[float] = (1.0, 1.0, 1.0),
                 random_state: int | None = None):
        super().__init__()
        check_int(d_input, "d_input", minimum=1)
        check_int(lookback, "lookback", minimum=1)
        check_int(horizon, "horizon", minimum=1)
        d_output = d_input if d_output is None else check_int(d_output, "d_output", minimum=1)
        check_int(d_model, "d_model", minimum=1)
        check_int(n_layers, "n_layers", minimum=0)
        if len(loss_weights) != 3:
            raise ValueError(f"loss_weights: expected 3 weights (horizon, next step, next "
                             f"input), got {list(loss_weights)}")
        for w in loss_weights:
            check_float(w, "loss_weights", low=0)
        self._config = dict(d_input=d_input, lookback=lookback, horizon=horizon,
                            d_output=d_output, d_model=d_model, d_state=d_state,
                            n_layers=n_layers, preprocess=list(preprocess),
                            loss_weights=list(loss_weights), random_state=random_state)
        self.lookback, self.horizon = lookback, horizon
        self.loss_weights = tuple(float(w) for w in loss_weights)
        seed = None if random_state is None else int(random_state)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = SpaceTimeEncoder(d_input, d_model, d_state, n_layers, lookback,
                                            tuple(preprocess), seed)
            self.decoder = ClosedLoopDecoder(d_model, d_state, lookback,
                                             None if seed is None else seed + 1000)
            self.head = nn.Linear(d_model, d_output)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    def forward(self, x: Tensor) -> SpaceTimeOutput:
        z = self.encoder.encode(x)                                                # (B L H)
        if z.shape[1] == 0:
            raise ValueError("x: expected a window of at least one time step to forecast "
                             "from, got length 0")
        y_open, u_next, forecast = self.decoder(z, self.horizon)
        return SpaceTimeOutput(forecast=self.head(forecast), next_step=self.head(y_open),
                               input_pred=u_next, encoded=z)

    def loss(self, output: SpaceTimeOutput, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """``{"total", "horizon", "next_step", "next_input"}``: closed-loop horizon MSE,
        open-loop next-step MSE over the window and the MSE of ``K x_t`` against ``z_{t+1}``.
        ``x`` is the window given to ``forward``, ``y`` ``(B, horizon,
        d_output)`` the truth after it."""
        dims: dict[str, int] = {}
        check_shape(output.forecast, "output.forecast", ("batch", self.horizon, "d_output"),
                    dims)
        check_shape(y, "y", ("batch", self.horizon, "d_output"), dims)
        parts = {
            "horizon": F.mse_loss(output.forecast, y),
            "next_step": F.mse_loss(output.next_step[:, :-1], x[:, 1:, :y.shape[-1]]),
            "next_input": F.mse_loss(output.input_pred[:, :-1], output.encoded[:, 1:]),
        }
        weights = dict(zip(parts, self.loss_weights, strict=True))
        parts["total"] = sum(weights[k] * v for k, v in parts.items())
        return parts

"""SpaceTime (Zhang et al., ICLR 2023): companion-matrix SSMs for forecasting, built as the
reference implementation (github.com/HazyResearch/spacetime) configures it.

``SpaceTime(d_input, lookback, horizon)`` maps a lookback window ``(batch, lookback,
d_input)`` to a forecast ``(batch, horizon, d_output)``:

1. *Embedding* to ``d_model`` channels: ``"repeat"`` (the reference's: the input tiled
   ``d_model / d_input`` times, no parameters) or ``"linear"``.
2. *Encoder*: ``n_layers`` blocks ``z + y + W gelu(y)`` with ``y = CompanionSSM(z)`` (a
   dropout before ``W``). In the first block ``z`` is the output of the *preprocessing
   SSMs*, fixed FIR companion filters — differencing of orders 0-3 (``"diff<k>"``) and
   moving-average residuals (``"ma<w>"``: ``x_t - mean(x_{t-w+1..t})``) — channel ``c``
   filtered by ``preprocess[c % len(preprocess)]``; its SSM has ``n_heads`` channels per
   companion kernel. Later blocks have ``z`` = their input and one kernel per channel.
3. *Closed-loop decoder*: a companion SSM over the encoded sequence ``z`` whose state
   ``x_t`` gives the open-loop next-step prediction ``C x_t`` and the predicted next input
   ``K x_t``; past the window it feeds its own prediction back, ``x_{t+1} = (A + B K) x_t``,
   so the forecast ``C (A + BK)^{j-1} x_L`` covers any horizon. ``B, C, K`` are
   L1-normalized as in the reference. An output map ``W gelu(.)`` (dropout before ``W``)
   returns to ``d_output`` channels.

Every companion ``A`` has its last column L1-normalized (the reference's ``norm_order=1``)
and is scaled so that ``A^lookback`` has spectral radius ``<= 1/2``
(:func:`~seqprob.ssm.conv_kernels.companion_last_column`). Training uses
:meth:`SpaceTime.loss`: closed-loop horizon MSE + open-loop next-step MSE (in data space,
over the window) + next-step input MSE (``K x_t`` vs ``z_{t+1}``). The model does not scale
data: z-score the series first (the Forecaster does).
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
from seqprob.core.validation import check_choice, check_float, check_int, check_shape
from seqprob.ssm.checks import check_sequence, check_state, check_step_input
from seqprob.ssm.conv_kernels import (
    companion_fold,
    companion_kernel,
    companion_last_column,
    companion_matrix,
    l1_normalized,
)
from seqprob.ssm.layers import CompanionSSM
from seqprob.ssm.lti import DenseTransition, fft_conv

# The reference's first block: differencing of orders 0-3 and moving-average residuals (it
# draws 64 windows at random from [4, 64); these four spread over that range).
PUBLISHED_PREPROCESS = ("diff0", "diff1", "diff2", "diff3", "ma4", "ma12", "ma24", "ma48")


def preprocessing_taps(kind: str) -> Tensor:
    """FIR taps of one preprocessing SSM: ``"diff<k>"`` (k-th difference, ``k >= 0``;
    ``diff0`` is the identity) or ``"ma<w>"`` (residual of a w-point trailing moving
    average, ``w >= 1``)."""
    match = re.fullmatch(r"(diff|ma)(\d+)", kind)
    if match is None or int(match.group(2)) < (match.group(1) == "ma"):
        raise ValueError(f"preprocess: expected entries like 'diff0', 'diff1' or 'ma4', got "
                         f"{kind!r}")
    n = int(match.group(2))
    if match.group(1) == "diff":  # on the CPU even while a checkpoint is checked on "meta"
        taps = torch.tensor([1.0], device="cpu")
        for _ in range(n):
            taps = F.pad(taps, (0, 1)) - F.pad(taps, (1, 0))
        return taps
    return F.pad(torch.ones(1, device="cpu"), (0, n - 1)) - torch.full((n,), 1.0 / n,
                                                                      device="cpu")


def preprocessing_bank(preprocess: tuple[str, ...], d_model: int) -> Tensor:
    """Taps per channel, ``(d_model, width)``: channel ``c`` gets ``preprocess[c % P]``."""
    taps = [preprocessing_taps(k) for k in preprocess]
    width = max(len(t) for t in taps)
    bank = torch.stack([F.pad(t, (0, width - len(t))) for t in taps])             # (P W)
    return bank[torch.arange(d_model) % len(taps)]                                # (H W)


class MaskDropout(nn.Module):
    """Inverted dropout with a mask from ``rand_like``: ``nn.Dropout``'s distribution at about
    half its CPU time (its ``bernoulli_`` is the slow part)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return x * ((torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p)))


class RepeatEmbedding(nn.Module):
    """The reference's embedding: ``(..., d_input)`` -> ``(..., d_model)`` by tiling."""

    def __init__(self, d_input: int, d_model: int):
        super().__init__()
        if d_model % d_input:
            raise ValueError(f"d_model: expected a multiple of d_input={d_input} with "
                             f"embedding='repeat' (the input tiled d_model / d_input times), "
                             f"got {d_model}; use embedding='linear'")
        self.times = d_model // d_input

    def forward(self, x: Tensor) -> Tensor:
        return x.repeat(*([1] * (x.dim() - 1)), self.times)


@dataclasses.dataclass
class EncoderState(State):
    """Recurrent state of the SpaceTime encoder: the first block's preprocessing filters and
    each block's companion SSM."""

    preprocess: State | None
    layers: tuple[State, ...]


class EncoderBlock(nn.Module):
    """``z + y + W drop(gelu(y))``, ``y = ssm(z)``, ``z = pre(h)`` (preprocessing filters, if
    any) or ``h``; on inputs the encoder has checked."""

    def __init__(self, d_model: int, d_state: int, l_max: int, *, n_heads: int,
                 taps: Tensor | None, dropout: float, seed: int | None):
        super().__init__()
        self.pre = (None if taps is None
                    else CompanionSSM(d_model, taps.shape[-1], l_max=l_max, taps=taps))
        self.ssm = CompanionSSM(d_model, d_state, l_max=l_max, n_heads=n_heads,
                                random_state=seed)
        self.mlp = nn.Sequential(nn.GELU(), MaskDropout(dropout), nn.Linear(d_model, d_model))

    def forward(self, h: Tensor, pre_state: State | None, state: State | None
                ) -> tuple[Tensor, State | None, State]:
        z = h
        if self.pre is not None:
            z, pre_state = self.pre.forward_unchecked(h, pre_state, None)
        y, state = self.ssm.forward_unchecked(z, state, None)
        return z + y + self.mlp(y), pre_state, state

    def outputs(self, h: Tensor) -> Tensor:
        """``forward(h)[0]`` from the zero state without the final states."""
        z = h if self.pre is None else self.pre.outputs_unchecked(h)
        y = self.ssm.outputs_unchecked(z)
        return z + y + self.mlp(y)

    def step(self, h: Tensor, pre_state: State | None, state: State
             ) -> tuple[Tensor, State | None, State]:
        z = h
        if self.pre is not None:
            z, pre_state = self.pre.step_unchecked(h, pre_state)
        y, state = self.ssm.step_unchecked(z, state)
        return z + y + self.mlp(y), pre_state, state


class SpaceTimeEncoder(SequenceModel):
    """Embedding and encoder blocks (preprocessing in the first): ``(B, L, d_input)`` ->
    ``(B, L, d_model)``; a sequence model (streaming with ``step``)."""

    def __init__(self, d_input: int, d_model: int, d_state: int, n_layers: int, lookback: int,
                 preprocess: tuple[str, ...], seed: int | None, *, embedding: str = "repeat",
                 n_heads: int = 1, dropout: float = 0.0):
        super().__init__()
        check_int(n_layers, "n_layers", minimum=1)
        check_choice(embedding, "embedding", ("repeat", "linear"))
        check_float(dropout, "dropout", low=0, high=1, high_open=True)
        self.d_input = d_input
        self.lookback = lookback
        self.embed = (RepeatEmbedding(d_input, d_model) if embedding == "repeat"
                      else nn.Linear(d_input, d_model))
        taps = preprocessing_bank(preprocess, d_model) if preprocess else None
        self.blocks = nn.ModuleList(
            EncoderBlock(d_model, d_state, lookback, n_heads=n_heads if i == 0 else 1,
                         taps=taps if i == 0 else None, dropout=dropout,
                         seed=None if seed is None else seed + i)
            for i in range(n_layers))

    def init_state(self, batch_size: int, *, device: Any = None, dtype: Any = None
                   ) -> EncoderState:
        pre = self.blocks[0].pre
        return EncoderState(None if pre is None else pre.init_state(batch_size, device=device),
                            tuple(b.ssm.init_state(batch_size, device=device)
                                  for b in self.blocks))

    def _checked(self, state: State | None, batch: int, device: Any) -> EncoderState:
        if state is None:
            return self.init_state(batch, device=device)
        return check_state(state, self.init_state(batch, device="meta"), "SpaceTimeEncoder")

    def _run(self, h: Tensor, state: EncoderState, step: bool) -> tuple[Tensor, EncoderState]:
        pre_state, states = state.preprocess, []
        for block, layer_state in zip(self.blocks, state.layers, strict=True):
            h, pre_state, layer_state = (block.step if step else block)(h, pre_state,
                                                                        layer_state)
            states.append(layer_state)
        return h, EncoderState(pre_state, tuple(states))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, EncoderState]:
        check_sequence(x, "x", self.d_input, self.lookback, "lookback")
        return self._run(self.embed(x), self._checked(state, x.shape[0], x.device), False)

    def encode(self, x: Tensor) -> Tensor:
        """``forward(x)[0]`` from the zero state, skipping the final states (which cost
        more than the convolutions): ``(B, L, d_input)`` -> ``(B, L, d_model)``."""
        check_sequence(x, "x", self.d_input, self.lookback, "lookback")
        h = self.embed(x)
        for block in self.blocks:
            h = block.outputs(h)
        return h

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, EncoderState]:
        check_step_input(x_t, "x_t", self.d_input)
        return self._run(self.embed(x_t), self._checked(state, x_t.shape[0], x_t.device), True)


class ClosedLoopDecoder(nn.Module):
    """Companion SSM with outputs ``C`` (next value) and ``K`` (next input, fed back past
    the window); parameters ``a_raw, b, c, k`` ``(H, d)``, used as ``a =
    companion_last_column(a_raw)`` and L1-normalized ``b, c, k`` (the reference's)."""

    def __init__(self, d_model: int, d_state: int, l_max: int, seed: int | None):
        super().__init__()
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        self.max_length = l_max
        self.a_raw, self.b, self.c, self.k = (
            nn.Parameter(torch.randn(d_model, d_state, generator=gen)) for _ in range(4))

    def system(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(a, b, c, k)``, each ``(H, d)``: the system the decoder runs."""
        a = companion_last_column(self.a_raw, self.max_length)
        return a, l1_normalized(self.b), l1_normalized(self.c), l1_normalized(self.k)

    def forward(self, z: Tensor, horizon: int) -> tuple[Tensor, Tensor, Tensor]:
        """``z`` ``(B, L, H)`` -> open-loop ``C x_t`` ``(B, L, H)``, ``K x_t`` ``(B, L, H)``
        and the closed-loop forecast ``C (A + BK)^j x_L``, ``j < horizon``, ``(B, horizon,
        H)``.

        One ``I - A^l_max`` folds ``C``, ``K`` and ``e_d`` for the companion FFT algorithm;
        the final state comes from the last state coordinate (see :func:`_final_state`)."""
        u = z.mT                                                                  # (B H L)
        length = u.shape[-1]
        a, b, c, k = self.system()
        fold = companion_fold(a, self.max_length)                                 # (H d d)
        outs = torch.einsum("ohi,hij->ohj", torch.stack([c, k]), fold)           # (2 H d)
        rows = torch.cat([outs, fold[None, :, -1]])                               # (3 H d)
        kernels = companion_kernel(a, b, rows, self.max_length)[..., :length]     # (3 H L)
        y_open, u_next = fft_conv(u, kernels[0]), fft_conv(u, kernels[1])        # (B H L)
        x_last = _final_state(a, b, kernels[2], u)                                # (B H d)
        loop = DenseTransition(companion_matrix(a) + b[:, :, None] * k[:, None, :])  # A + BK
        ahead = loop.transpose().krylov(c, horizon)                               # (H d h)
        forecast = torch.einsum("hdj,bhd->bjh", ahead, x_last)                    # (B h H)
        return y_open.mT, u_next.mT, forecast


def _final_state(a: Tensor, b: Tensor, last: Tensor, u: Tensor) -> Tensor:
    """The companion system's state after ``u`` ``(B, H, L)`` from zero, ``(B, H, d)``, from
    the kernel ``last`` ``(H, L)`` of its last coordinate ``s_t = x_{t, d-1}``.

    ``A``'s shift gives ``x_{t,i} = x_{t-1,i-1} + a_i s_{t-1} + b_i u_t``, so ``x_{L-1,i} =
    sum_{j <= i} a_{i-j} s_{L-2-j} + b_{i-j} u_{L-1-j}``: two triangular Toeplitz products
    with the last ``d`` values of ``s = last * u`` and of ``u`` — ``O(B H d (d + L))``
    instead of the ``d`` state-coordinate kernels."""
    d, length = a.shape[-1], u.shape[-1]
    reach = F.pad(last.flip(-1), (0, d + 1)).unfold(-1, length, 1)[:, 1:d + 1]   # (H d L)
    s_past = torch.einsum("hjl,bhl->bhj", reach, u)                  # s_{L-2-j}  (B H d)
    u_past = F.pad(u, (d, 0))[..., -d:].flip(-1)                     # u_{L-1-j}  (B H d)
    i = torch.arange(d, device=a.device)
    lag = i[:, None] - i[None, :]                                                 # (d d)
    lower = lag >= 0
    toeplitz_a = torch.where(lower, a[:, lag.clamp_min(0)], 0)                    # (H d d)
    toeplitz_b = torch.where(lower, b[:, lag.clamp_min(0)], 0)
    return (torch.einsum("hij,bhj->bhi", toeplitz_a, s_past)
            + torch.einsum("hij,bhj->bhi", toeplitz_b, u_past))


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
                 d_model: int = 128, d_state: int = 64, n_layers: int = 1, n_heads: int = 8,
                 embedding: str = "repeat",
                 preprocess: tuple[str, ...] | list[str] = PUBLISHED_PREPROCESS,
                 dropout: float = 0.25,
                 loss_weights: tuple[float, float, float] | list[float] = (1.0, 1.0, 1.0),
                 random_state: int | None = None):
        super().__init__()
        check_int(d_input, "d_input", minimum=1)
        check_int(lookback, "lookback", minimum=1)
        check_int(horizon, "horizon", minimum=1)
        d_output = d_input if d_output is None else check_int(d_output, "d_output", minimum=1)
        check_int(d_model, "d_model", minimum=1)
        if len(loss_weights) != 3:
            raise ValueError(f"loss_weights: expected 3 weights (horizon, next step, next "
                             f"input), got {list(loss_weights)}")
        for w in loss_weights:
            check_float(w, "loss_weights", low=0)
        self._config = dict(d_input=d_input, lookback=lookback, horizon=horizon,
                            d_output=d_output, d_model=d_model, d_state=d_state,
                            n_layers=n_layers, n_heads=n_heads, embedding=embedding,
                            preprocess=list(preprocess), dropout=dropout,
                            loss_weights=list(loss_weights), random_state=random_state)
        self.lookback, self.horizon = lookback, horizon
        self.loss_weights = tuple(float(w) for w in loss_weights)
        seed = None if random_state is None else int(random_state)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = SpaceTimeEncoder(d_input, d_model, d_state, n_layers, lookback,
                                            tuple(preprocess), seed, embedding=embedding,
                                            n_heads=n_heads, dropout=dropout)
            self.decoder = ClosedLoopDecoder(d_model, d_state, lookback,
                                             None if seed is None else seed + 1000)
            self.head = nn.Sequential(nn.GELU(), MaskDropout(dropout),
                                      nn.Linear(d_model, d_output))

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, Tensor], config: dict[str, Any]) -> SpaceTime:
        """As :meth:`Persistable.from_checkpoint`; a checkpoint of the simplified SpaceTime
        that seqprob built before the published architecture is refused by name."""
        if "embedding" not in config:
            raise ValueError("path: a SpaceTime checkpoint from before the published "
                             "architecture (its config has no 'embedding'); this seqprob "
                             "cannot load it: retrain the model")
        return super().from_checkpoint(tensors, config)

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

"""The Mamba block: a selective SSM on ``seqprob.core.scan``'s selective scan (parallel mode)
and ``selective_state_update`` (step mode).

``in_proj`` splits into ``x`` and the gate ``z``; ``x`` goes through a causal depthwise
convolution and SiLU, then the selective scan with input-dependent ``delta, B, C`` (from
``x_proj`` and ``dt_proj``), gated by ``silu(z)`` and projected back by ``out_proj``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.contract import SequenceModel, State
from seqprob.core.persist import Persistable, register
from seqprob.core.scan import (
    BACKENDS,
    block_step_backend,
    selective_scan_unchecked,
    selective_state_update_unchecked,
)
from seqprob.core.validation import check_choice, check_float, check_int, check_shape
from seqprob.kernels.limits import SCAN_MAX_STATE
from seqprob.ssm.checks import check_sequence, check_state, check_step_input

if TYPE_CHECKING:
    from seqprob.kernels.cpu_step import BlockStepWeights


@dataclasses.dataclass
class MambaState(State):
    """Per-layer generation cache."""

    conv: Tensor  # (batch, d_inner, d_conv - 1): the last inputs of the causal convolution
    ssm: Tensor   # (batch, d_inner, d_state), fp32


def inverse_softplus(y: Tensor) -> Tensor:
    """``x`` with ``softplus(x) = y`` (``y > 0``), stable for small ``y``."""
    return y + torch.log(-torch.expm1(-y))


def _wide(x: Tensor) -> Tensor:
    """``x`` in the scan's compute dtype: fp32, or fp64 for an fp64 block."""
    return x.to(torch.promote_types(torch.float32, x.dtype))


@register
class Mamba(SequenceModel, Persistable):
    """Mamba block: ``(batch, length, d_model)`` -> same shape.

    ``backend`` is passed to the selective scan (parallel mode) and to
    ``selective_state_update`` (step mode). ``forward``/``step`` check their inputs;
    ``forward_unchecked``/``step_unchecked`` are the unchecked cores that a composite model
    (``MambaLM``) calls after checking its own inputs once.
    ``dt_rank="auto"`` means ``ceil(d_model / 16)``.
    """

    def __init__(self, d_model: int, d_state: int = 16, *, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 backend: str = "auto", random_state: int | None = None):
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        check_int(d_state, "d_state", minimum=1, maximum=SCAN_MAX_STATE)
        check_int(d_conv, "d_conv", minimum=1)
        check_int(expand, "expand", minimum=1)
        check_choice(backend, "backend", BACKENDS)
        rank = math.ceil(d_model / 16) if dt_rank == "auto" else check_int(dt_rank, "dt_rank",
                                                                            minimum=1)
        check_float(dt_min, "dt_min", low=0, low_open=True)
        check_float(dt_max, "dt_max", low=dt_min)
        self._config = dict(d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                            dt_rank=dt_rank, dt_min=dt_min, dt_max=dt_max,
                            dt_init_floor=dt_init_floor, conv_bias=conv_bias, bias=bias,
                            backend=backend, random_state=random_state)
        self.d_model, self.d_state, self.d_conv, self.dt_rank = d_model, d_state, d_conv, rank
        self.d_inner = expand * d_model
        self.backend = backend
        gen = torch.Generator()
        gen.manual_seed(random_state) if random_state is not None else gen.seed()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen, device="cpu")))
            self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
            self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner,
                                    bias=conv_bias)
            self.x_proj = nn.Linear(self.d_inner, rank + 2 * d_state, bias=False)
            self.dt_proj = nn.Linear(rank, self.d_inner)
            self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
            std = rank ** -0.5
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus(dt))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))            # S4D-Real: A = -(1, 2, ..., N)
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self._expected: dict[int, MambaState] = {}   # meta-device states for checked_state
        self._a_cache: tuple[tuple, Tensor] | None = None   # A for generation (no autograd)
        self._step_cache: tuple[tuple, BlockStepWeights] | None = None   # fused step weights

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and deep copies leave the generation caches out (the fused step's holds a
        copy of every weight); they are rebuilt on the next step."""
        return {**self.__dict__, "_a_cache": None, "_step_cache": None}

    def init_state(self, batch_size: int, *, device: Any = None, dtype: Any = None
                   ) -> MambaState:
        device = device or self.D.device
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device,
                             dtype=dtype or self.D.dtype),
            ssm=torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                            dtype=torch.promote_types(torch.float32, self.D.dtype)))

    def checked_state(self, state: State | None, batch: int) -> MambaState | None:
        if state is None:
            return None
        if batch not in self._expected:          # shapes only; built once per batch size
            self._expected[batch] = self.init_state(batch, device="meta")
        return check_state(state, self._expected[batch], "Mamba")

    def _check_dtype(self, x: Tensor, name: str) -> None:
        if x.dtype != self.D.dtype:
            raise TypeError(f"{name}: expected dtype {self.D.dtype} (the dtype of the block's "
                            f"parameters; convert the block with .to(dtype)), got {x.dtype}")

    def _a(self) -> Tensor:
        """``A = -exp(A_log)`` (fp32 or wider), computed once per parameter version when no
        gradient is recorded (token-by-token generation)."""
        if torch.is_grad_enabled():
            return -torch.exp(_wide(self.A_log))
        key = (self.A_log._version, self.A_log.data_ptr(), self.A_log.device)
        if self._a_cache is None or self._a_cache[0] != key:
            self._a_cache = (key, -torch.exp(_wide(self.A_log)))
        return self._a_cache[1]

    def _delta_b_c(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``u`` ``(..., d_inner)`` -> raw ``delta`` ``(..., d_inner)`` (no bias), ``B, C``
        ``(..., N)``."""
        dt, b, c = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), b, c

    def _conv(self, window: Tensor) -> Tensor:
        """Causal depthwise convolution of ``window`` ``(B, d_conv - 1 + L, d_inner)`` ->
        ``(B, L, d_inner)``, without transposing copies: a ``(B, d_inner, 1, T)`` view of the
        window is channels-last, so conv2d reads and writes the ``(B, L, d_inner)`` layout."""
        out = F.conv2d(window.mT.unsqueeze(2), self.conv1d.weight.unsqueeze(2),
                       self.conv1d.bias, groups=self.d_inner)                    # (B Di 1 L)
        return out.squeeze(2).mT

    def _check_input(self, x: Tensor, mask: Tensor | None) -> None:
        check_sequence(x, "x", self.d_model, None)
        self._check_dtype(x, "x")
        if mask is not None:
            check_shape(mask, "mask", tuple(x.shape[:2]))

    def forward(self, x: Tensor, state: State | None = None, *, mask: Tensor | None = None
                ) -> tuple[Tensor, MambaState]:
        """``x`` ``(B, L, d_model)`` -> ``(y, state)``. ``mask`` ``(B, L)`` (1 real, 0 padding):
        padded positions feed zeros to the convolution and leave the SSM state unchanged."""
        self._check_input(x, mask)
        return self.forward_unchecked(x, self.checked_state(state, x.shape[0]), mask)

    def outputs(self, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """``forward(x)[0]`` from the zero state without the final state (training paths
        that discard it; on CUDA the scan may then be mamba_ssm's even under autograd)."""
        self._check_input(x, mask)
        return self.outputs_unchecked(x, mask)

    def outputs_unchecked(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """:meth:`outputs` on checked inputs."""
        return self.forward_unchecked(x, None, mask, with_state=False)[0]

    def forward_unchecked(self, x: Tensor, state: MambaState | None, mask: Tensor | None,
            with_state: bool = True) -> tuple[Tensor, MambaState | None]:
        """:meth:`forward` on checked inputs (a composite model's inner call; no checks).

        Every activation stays in the ``(B, L, d_inner)`` layout of the projections; the scan
        gets ``.mT`` views (its ``(B, d_inner, L)`` shape) and returns one. Without a state
        the scan gets no ``initial_state`` (so ``"auto"`` may pick mamba_ssm on CUDA).
        ``L = 0`` returns an empty ``y`` and the state unchanged."""
        if x.shape[1] == 0:
            state = state or self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
            return x.new_zeros(x.shape), state if with_state else None
        xs, z = self.in_proj(x).chunk(2, dim=-1)                                  # (B L Di)
        if mask is not None:
            xs = xs * mask[..., None].to(xs.dtype)
        history = (xs.new_zeros(x.shape[0], self.d_conv - 1, self.d_inner) if state is None
                   else state.conv.to(xs.dtype).mT)
        window = torch.cat([history, xs], dim=1)                                  # (B K-1+L Di)
        u = F.silu(self._conv(window))                                            # (B L Di)
        delta, b, c = self._delta_b_c(u)                                          # (B L Di/N)
        bias, softplus = _wide(self.dt_proj.bias), True
        if mask is not None:       # delta = 0 at padding: exp(0 A) = 1 and no input
            delta = F.softplus(delta + bias) * mask[..., None].to(delta.dtype)
            bias, softplus = None, False
        out = selective_scan_unchecked(
            u.mT, delta.mT, self._a(), b.mT, c.mT, _wide(self.D),
            z=z.mT, delta_bias=bias, delta_softplus=softplus,
            initial_state=None if state is None else state.ssm,
            return_last_state=with_state, backend=self.backend)                  # (B Di L)
        if not with_state:
            return self.out_proj(out.mT), None
        y, last = out
        conv_state = window[:, window.shape[1] - (self.d_conv - 1):].mT.contiguous()
        return self.out_proj(y.mT), MambaState(conv=conv_state, ssm=last)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, MambaState]:
        """``x_t`` ``(B, d_model)`` -> ``(y_t, state)`` by the recurrence."""
        check_step_input(x_t, "x_t", self.d_model)
        self._check_dtype(x_t, "x_t")
        return self.step_unchecked(x_t, self.checked_state(state, x_t.shape[0]))

    def step_backend(self, x_t: Tensor, state: MambaState) -> str:
        """Which step :meth:`step_unchecked` runs: ``"cpu"``, the fused numba block step
        (:func:`~seqprob.kernels.cpu_step.mamba_block_step_cpu`), for CPU tensors in fp32 or
        fp64 (input, parameters and both states in one dtype) when no gradient is recorded and
        the block's ``backend`` is ``"auto"`` or ``"cpu"``; ``"reference"``, the torch ops of
        :meth:`_step_torch` around ``selective_state_update`` (with the block's backend),
        otherwise."""
        dtype = x_t.dtype
        if (dtype not in (torch.float32, torch.float64) or state.conv.dtype != dtype
                or state.ssm.dtype != dtype):
            return "reference"
        grad = torch.is_grad_enabled() and (
            x_t.requires_grad or any(p.requires_grad for p in self._step_params()))
        return block_step_backend(self.backend, x_t, grad)

    def step_unchecked(self, x_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """:meth:`step` on checked inputs, by the path :meth:`step_backend` picks; the
        caller's state is never modified (the returned state is new)."""
        if self.step_backend(x_t, state) == "cpu":
            return self._step_fused(x_t, state)
        return self._step_torch(x_t, state)

    def _step_params(self) -> list[Tensor]:
        """Every parameter of the block, read from the modules' ``_parameters`` dicts (a
        fifth of ``parameters()``' cost, which matters once per layer and token)."""
        mods = self._modules
        return [p for params in (self._parameters, *(mods[name]._parameters for name in (
                    "in_proj", "conv1d", "x_proj", "dt_proj", "out_proj")))
                for p in params.values() if p is not None]

    def _step_weights(self) -> BlockStepWeights:
        """The fused step's weights in the parameters' dtype, prepared once per parameter
        version (keyed on every parameter's ``_version`` and storage, so an optimizer step or
        ``load_state_dict`` between generations is seen)."""
        key = tuple((p._version, p.data_ptr(), p.dtype) for p in self._step_params())
        if self._step_cache is None or self._step_cache[0] != key:
            from seqprob.kernels.cpu_step import block_step_weights  # numba loads lazily
            a = -torch.exp(self.A_log.detach().to(self.D.dtype))
            self._step_cache = (key, block_step_weights(
                self.in_proj, self.conv1d, self.x_proj, self.dt_proj, a, self.D,
                self.out_proj, self.D.dtype))
        return self._step_cache[1]

    def _step_fused(self, x_t: Tensor, state: MambaState,
                    norm: tuple[Tensor, float] | None = None, residual: bool = False
                    ) -> tuple[Tensor, MambaState]:
        """The ``"cpu"`` step: the whole block in one numba call (``norm``, ``residual``: see
        :meth:`step_residual_unchecked`)."""
        from seqprob.kernels.cpu_step import mamba_block_step_cpu
        y, conv, ssm = mamba_block_step_cpu(x_t, state.conv, state.ssm, self._step_weights(),
                                            norm, residual)
        return y, MambaState(conv=conv, ssm=ssm)

    def step_residual_unchecked(self, h: Tensor, state: MambaState, norm_weight: Tensor,
                                eps: float) -> tuple[Tensor, MambaState]:
        """A pre-norm residual layer's step, ``h + block(rms_norm(h) * norm_weight)``
        ``(B, d_model)``, on checked inputs: one numba call on the ``"cpu"`` step path (the
        norm and the residual inside it; language-model generation), torch ops otherwise."""
        norm_grad = torch.is_grad_enabled() and norm_weight.requires_grad
        if not norm_grad and self.step_backend(h, state) == "cpu":
            return self._step_fused(h, state, (norm_weight, eps), residual=True)
        y, state = self._step_torch(F.rms_norm(h, norm_weight.shape, norm_weight, eps), state)
        return h + y, state

    def _step_torch(self, x_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """The ``"reference"`` step, the fused step's twin: the convolution window in torch,
        the SSM update by :func:`~seqprob.core.scan.selective_state_update_unchecked` on a
        copy of the state."""
        xs, z = self.in_proj(x_t).chunk(2, dim=-1)                                # (B Di)
        window = torch.cat([state.conv.to(xs.dtype), xs[..., None]], dim=-1)     # (B Di K)
        u = torch.linalg.vecdot(window, self.conv1d.weight[:, 0])                 # (B Di)
        u = F.silu(u + self.conv1d.bias if self.conv1d.bias is not None else u)
        delta, b, c = self._delta_b_c(u)                                          # (B Di/N)
        ssm = state.ssm.clone()
        y = selective_state_update_unchecked(
            ssm, u, delta, self._a(), b, c, _wide(self.D), z,
            _wide(self.dt_proj.bias), dt_softplus=True, backend=self.backend)   # (B Di)
        return self.out_proj(y), MambaState(conv=window[..., 1:], ssm=ssm)

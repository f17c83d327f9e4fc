"""Linear time-invariant SSM layers: S4D, S4 and SpaceTime's companion SSM.

Each layer runs ``d_model`` independent SSMs (one per channel) on input ``(batch, length,
d_model)``: parallel mode is an FFT convolution with the kernel module's kernel plus the
response to the initial state; step mode is the recurrence of the same discrete system.
``forward(x, state)`` computes the final recurrent state from the input (in chunks of the
length), so chunked runs continue exactly.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqprob.core.contract import SequenceModel, State
from seqprob.core.persist import Persistable, register
from seqprob.core.validation import check_int, check_shape
from seqprob.ssm.checks import check_sequence, check_state, check_step_input
from seqprob.ssm.conv_kernels import CompanionKernel, DPLRKernel, S4DKernel
from seqprob.ssm.lti import fft_conv, final_state, fir_conv, recurrence_step, state_response


@dataclasses.dataclass
class SSMState(State):
    """Recurrent state of a linear time-invariant SSM layer."""

    x: Tensor  # (batch, d_model, N): complex for S4D/S4, real for the companion SSM


class LTISSM(SequenceModel, Persistable):
    """Base of the convolutional SSM layers: ``y = post(conv(u, K) + D u)``.

    Subclasses build ``self.kernel`` (a module of :mod:`seqprob.ssm.conv_kernels`) and ``self.post``
    (position-wise output map). ``mask`` ``(batch, length)`` zeroes padded positions' inputs.
    """

    kernel: nn.Module
    post: nn.Module

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.D = nn.Parameter(torch.randn(d_model))

    @abc.abstractmethod
    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (each concrete layer has its own)."""

    def init_state(self, batch_size: int, *, device: Any = None, dtype: Any = None) -> SSMState:
        n, state_dtype = self.kernel.state_size, self.kernel.state_dtype
        return SSMState(torch.zeros(batch_size, self.d_model, n, dtype=state_dtype,
                                    device=device or self.D.device))

    def checked_state(self, state: State | None, batch: int) -> SSMState | None:
        if state is None:
            return None
        return check_state(state, self.init_state(batch, device="meta"),
                           type(self).__name__)

    def _check_input(self, x: Tensor, mask: Tensor | None) -> None:
        check_sequence(x, "x", self.d_model, self.kernel.max_length)
        if mask is not None:
            check_shape(mask, "mask", tuple(x.shape[:2]))

    def forward(self, x: Tensor, state: State | None = None, *, mask: Tensor | None = None
                ) -> tuple[Tensor, SSMState]:
        """``x`` ``(B, L, d_model)`` -> ``(y (B, L, d_model), final state)``; ``B = 0`` or
        ``L = 0`` returns an empty ``y`` and the state unchanged."""
        self._check_input(x, mask)
        return self.forward_unchecked(x, self.checked_state(state, x.shape[0]), mask)

    def forward_unchecked(self, x: Tensor, state: SSMState | None, mask: Tensor | None
                          ) -> tuple[Tensor, SSMState]:
        """:meth:`forward` on checked inputs (a composite model's inner call; no checks)."""
        y, u = self._outputs(x, state, mask)
        if u.numel() == 0:
            return y, state or self.init_state(x.shape[0], device=x.device)
        trans, b, _ = self.kernel.recurrence()
        last = final_state(trans, b, u, None if state is None else state.x)
        return y, SSMState(last)

    def outputs(self, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """``forward(x)[0]`` from the zero state without the final state (training paths
        that discard it): ``(B, L, d_model)`` -> ``(B, L, d_model)``."""
        self._check_input(x, mask)
        return self.outputs_unchecked(x, mask)

    def outputs_unchecked(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """:meth:`outputs` on checked inputs."""
        return self._outputs(x, None, mask)[0]

    def _outputs(self, x: Tensor, state: SSMState | None, mask: Tensor | None
                 ) -> tuple[Tensor, Tensor]:
        """``(y (B, L, d_model), u (B, d_model, L) masked input)`` on checked inputs."""
        u = x.mT.float()                                                          # (B H L)
        if mask is not None:
            u = u * mask[:, None, :].to(u.dtype)
        length = u.shape[-1]
        if u.numel() == 0:                                  # an empty batch or length
            return self.post(u.mT).to(x.dtype), u
        y = self._convolve(u) + self.D[:, None] * u                                # (B H L)
        if state is not None:
            trans, _, c = self.kernel.recurrence()
            y = y + state_response(trans, c, state.x, length)
        return self.post(y.mT).to(x.dtype), u

    def _convolve(self, u: Tensor) -> Tensor:
        """The causal convolution with the kernel: ``(B, H, L)`` -> ``(B, H, L)``."""
        return fft_conv(u, self.kernel(u.shape[-1]))

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, SSMState]:
        """``x_t`` ``(B, d_model)`` -> ``(y_t (B, d_model), state)``."""
        check_step_input(x_t, "x_t", self.d_model)
        return self.step_unchecked(x_t, self.checked_state(state, x_t.shape[0]))

    def step_unchecked(self, x_t: Tensor, state: SSMState) -> tuple[Tensor, SSMState]:
        """:meth:`step` on checked inputs."""
        trans, b, c = self.kernel.recurrence()
        u = x_t.float()
        y, x = recurrence_step(trans, b, c, state.x, u)
        return self.post(y + self.D * u).to(x_t.dtype), SSMState(x)


class GatedOutput(nn.Module):
    """S4's position-wise output map: GELU, then a linear layer to ``2 H`` and a GLU."""

    def __init__(self, d_model: int):
        super().__init__()
        self.linear = nn.Linear(d_model, 2 * d_model)

    def forward(self, y: Tensor) -> Tensor:
        return F.glu(self.linear(F.gelu(y)), dim=-1)


@register
class S4D(LTISSM):
    """Diagonal S4 layer (S4D): ``(batch, length, d_model)`` -> same shape.

    ``init`` is ``"inv"`` (S4D-Inv) or ``"lin"`` (S4D-Lin); ``discretization`` is ``"zoh"``
    or ``"bilinear"``; ``l_max`` (optional) refuses longer inputs.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "inv",
                 discretization: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 l_max: int | None = None, random_state: int | None = None):
        super().__init__(d_model)
        self._config = dict(d_model=d_model, d_state=d_state, init=init,
                            discretization=discretization, dt_min=dt_min, dt_max=dt_max,
                            l_max=l_max, random_state=random_state)
        self.kernel = S4DKernel(d_model, d_state, init=init, discretization=discretization,
                                dt_min=dt_min, dt_max=dt_max, random_state=random_state)
        self.kernel.max_length = None if l_max is None else check_int(l_max, "l_max", minimum=1)
        self.post = GatedOutput(d_model)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)


@register
class S4(LTISSM):
    """S4 layer with the DPLR HiPPO-LegS kernel, for inputs of length ``<= l_max``."""

    def __init__(self, d_model: int, d_state: int = 64, *, l_max: int = 1024,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, random_state: int | None = None):
        super().__init__(d_model)
        self._config = dict(d_model=d_model, d_state=d_state, l_max=l_max, dt_min=dt_min,
                            dt_max=dt_max, random_state=random_state)
        self.kernel = DPLRKernel(d_model, d_state, l_max=l_max, dt_min=dt_min, dt_max=dt_max,
                                 random_state=random_state)
        self.post = GatedOutput(d_model)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)


@register
class CompanionSSM(LTISSM):
    """SpaceTime's companion-matrix SSM layer (no output map: ``y = conv(u, K) + D u``).

    ``n_heads`` channels share each companion kernel (``d_model / n_heads`` kernels; ``D``
    stays per channel). ``taps`` ``(d_model, d_state)`` makes it a fixed FIR filter
    (preprocessing SSM).
    """

    def __init__(self, d_model: int, d_state: int = 64, *, l_max: int = 1024, n_heads: int = 1,
                 taps: Tensor | list | None = None, random_state: int | None = None):
        super().__init__(d_model)
        listed = None if taps is None else torch.as_tensor(taps, device="cpu").tolist()
        self._config = dict(d_model=d_model, d_state=d_state, l_max=l_max, n_heads=n_heads,
                            taps=listed, random_state=random_state)
        taps = None if taps is None else torch.as_tensor(taps, dtype=torch.float32)
        self.kernel = CompanionKernel(d_model, d_state, l_max=l_max, n_heads=n_heads, taps=taps,
                                      random_state=random_state)
        if taps is not None:  # a fixed filter: the taps carry the instantaneous term
            self.D.requires_grad_(False)
            with torch.no_grad():
                self.D.zero_()
        self.post = nn.Identity()

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    def _convolve(self, u: Tensor) -> Tensor:
        """As :meth:`LTISSM._convolve`; fixed taps (at most ``d_state`` of them) directly."""
        if self.kernel.fixed:
            return fir_conv(u, self.kernel(min(u.shape[-1], self.kernel.state_size)))
        return super()._convolve(u)

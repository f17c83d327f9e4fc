"""The dispatching scan ops: ``selective_scan`` and ``linear_scan``.

Backends (``backend=``): ``"reference"`` (sequential loop, the oracle) — more follow.
``"auto"`` picks the fastest backend available for the tensors' device.
"""

from __future__ import annotations

from torch import Tensor

from seqprob.core.validation import check_choice
from seqprob.kernels.reference import linear_scan_ref, selective_scan_ref

BACKENDS = ("auto", "reference")


def backend_status() -> list[tuple[str, bool, str]]:
    """``(backend, available here, note)`` for every concrete backend."""
    return [("reference", True, "sequential loop, the oracle")]


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor | None = None, z: Tensor | None = None,
                   delta_bias: Tensor | None = None, delta_softplus: bool = False,
                   initial_state: Tensor | None = None, return_last_state: bool = False,
                   backend: str = "auto") -> Tensor | tuple[Tensor, Tensor]:
    """mamba_ssm's selective scan (layout ``(batch, dim, length)``) plus ``initial_state``."""
    check_choice(backend, "backend", BACKENDS)
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                              initial_state, return_last_state)


def linear_scan(a: Tensor, b: Tensor, initial_state: Tensor | None = None,
                backend: str = "auto") -> Tensor:
    """h_t = a_t * h_{t-1} + b_t along dim 1 of ``(batch, length, ...)``; returns all h_t."""
    check_choice(backend, "backend", BACKENDS)
    return linear_scan_ref(a, b, initial_state)

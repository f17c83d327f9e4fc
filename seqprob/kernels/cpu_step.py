"""Fused CPU single-token step of the selective scan (numba): mamba_ssm's
``selective_state_update`` in one pass over the state.

One loop over ``(batch, dim)`` rows: the row's ``dt`` (bias, softplus), its N state entries
decayed and fed in place, the output's dot product, skip term and gate, without any
``(batch, dim, N)`` temporary. Decays ``exp(dt A) <= 1`` use the vectorized fp32 exp of
``seqprob.kernels.cpu`` (it clamps its argument); a row with a growing mode (``dt A > 0``,
outside Mamba's parametrization) uses libm's exp, so an overflow is inf and the checked op
raises. Sequential: at generation sizes (a few thousand rows of N = 16)
the work is tens of microseconds, less than waking a thread pool. Inputs arrive validated.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from torch import Tensor

from seqprob.kernels.cpu import _exp, _like

_JIT = {"fastmath": True, "cache": True}


@njit(**_JIT)
def _state_update(state, x, dt, A, B, C, D, z, bias, softplus, out):
    batch, dim, nstate = state.shape
    for b in range(batch):
        for d in range(dim):
            step = dt[b, d]
            if bias.size:
                step += bias[d]
            if softplus and step <= 20.0:
                step = _like(math.log1p(math.exp(step)), step)
            u = x[b, d]
            feed = step * u
            grows = False           # a growing mode: libm's exp, which overflows to inf
            for n in range(nstate):
                grows |= step * A[d, n] > 0
            y = _like(0.0, u)
            for n in range(nstate):
                v = step * A[d, n]
                decay = _like(math.exp(v), v) if grows else _exp(v)
                h = decay * state[b, d, n] + feed * B[b, n]
                state[b, d, n] = h
                y += h * C[b, n]
            if D.size:
                y += D[d] * u
            if z.size:
                g = z[b, d]
                y *= g / (1 + _exp(-g))
            out[b, d] = y


def _arr(x: Tensor | None, wide: torch.dtype, empty: np.ndarray) -> np.ndarray:
    """A strided numpy view (the kernel reads any layout: no copies of ``split`` views)."""
    if x is None:
        return empty
    x = x if x.dtype == wide else x.to(wide)
    return (x.detach() if x.requires_grad else x).numpy()


def selective_state_update_cpu(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                               C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
                               dt_bias: Tensor | None = None, dt_softplus: bool = False
                               ) -> Tensor:
    """Same contract as ``selective_state_update_ref`` for CPU tensors; ``state`` is updated
    in place (through a contiguous copy written back when it is not contiguous or not in the
    compute dtype, fp32 or fp64)."""
    wide = torch.float64 if torch.float64 in (x.dtype, state.dtype) else torch.float32
    work = state if state.dtype == wide and state.is_contiguous() else state.to(wide).contiguous()
    out = torch.empty(x.shape, dtype=wide)
    np_dtype = np.float64 if wide == torch.float64 else np.float32
    vector, matrix = np.empty(0, dtype=np_dtype), np.empty((0, 0), dtype=np_dtype)
    _state_update(_arr(work, wide, empty=None), *(_arr(t, wide, matrix) for t in (x, dt)),
                  *(_arr(t, wide, matrix) for t in (A, B, C)), _arr(D, wide, vector),
                  _arr(z, wide, matrix), _arr(dt_bias, wide, vector), bool(dt_softplus),
                  out.numpy())
    if work is not state:
        state.copy_(work)
    return out.to(x.dtype)

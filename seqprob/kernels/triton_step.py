"""Triton single-token step of the selective scan (mamba_ssm's ``selective_state_update``).

One program per ``(batch, block of BLOCK_D channels)`` loads the ``(BLOCK_D, N)`` state tile,
decays it, adds ``dt * B * x``, writes it back in place and reduces it against ``C``: the
state is read and written once, everything else is ``O(batch * (dim + N))``. CUDA tensors, or
CPU tensors under ``TRITON_INTERPRET=1`` (set before Triton is imported). The kernel lives in
``triton_kernels`` (imported on first use: optional extra ``seqprob[gpu]``); inputs arrive
validated.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _kernel():
    """The jitted step kernel (``triton_kernels.selective_step``), imported on first use."""
    try:
        from seqprob.kernels.triton_kernels import selective_step
    except ImportError as err:
        raise ImportError("selective_state_update_triton needs Triton: "
                          "pip install 'seqprob[gpu]'") from err
    return selective_step


def _blocks(dim: int, nstate: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): N padded to a power of two, tiles of at most 1024 state entries."""
    block_n = 1 << max(0, nstate - 1).bit_length()
    return min(1 << max(0, dim - 1).bit_length(), max(1, 1024 // block_n)), block_n


def selective_state_update_triton(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor,
                                  C: Tensor, D: Tensor | None = None, z: Tensor | None = None,
                                  dt_bias: Tensor | None = None, dt_softplus: bool = False
                                  ) -> Tensor:
    """One recurrent step, ``state`` updated in place; returns ``out`` (batch, dim) in x's dtype.

    ``state``: (batch, dim, N), any strides; ``x, dt, z``: (batch, dim); ``A``: (dim, N);
    ``B, C``: (batch, N); ``D, dt_bias``: (dim,). With ``dt = softplus(dt + dt_bias)`` when
    ``dt_softplus``: state = exp(dt A) state + dt B x; out = state C + D x, times silu(z).
    Arithmetic in fp32 (fp64 when ``state`` is fp64).
    """
    batch, dim, nstate = state.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)          # (batch dim)
    x, dt, A, B, C = (t.contiguous() for t in (x, dt, A, B, C))
    dummy = x                                            # never read when its flag is off
    block_d, block_n = _blocks(dim, nstate)
    _kernel()[(batch, -(-dim // block_d))](
        state, x, dt, A, B, C,
        D.contiguous() if D is not None else dummy, z.contiguous() if z is not None else dummy,
        dt_bias.contiguous() if dt_bias is not None else dummy, out,
        dim, nstate, *state.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=dt_bias is not None,
        SOFTPLUS=bool(dt_softplus), FP64=state.dtype == torch.float64, BLOCK_D=block_d,
        BLOCK_N=block_n)
    return out

"""Triton single-token step of the selective scan (mamba_ssm's ``selective_state_update``).

One program per ``(batch, block of BLOCK_D channels)`` loads the ``(BLOCK_D, N)`` state tile,
decays it, adds ``dt * B * x``, writes it back in place and reduces it against ``C``: the
state is read and written once, everything else is ``O(batch * (dim + N))``. CUDA tensors, or
CPU tensors under ``TRITON_INTERPRET=1`` (set before Triton is imported). Triton is imported
inside the functions (optional extra ``seqprob[gpu]``); inputs arrive validated.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def _kernel():
    """The jitted kernel, built on first use (Triton imported here, not at module import)."""
    try:
        import triton
        import triton.language as tl
    except ImportError as err:
        raise ImportError("selective_state_update_triton needs Triton: "
                          "pip install 'seqprob[gpu]'") from err

    @triton.jit
    def step(state_ptr, x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr, out_ptr,
             dim, nstate, s_b, s_d, s_n,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
             SOFTPLUS: tl.constexpr, FP64: tl.constexpr, BLOCK_D: tl.constexpr,
             BLOCK_N: tl.constexpr):
        b = tl.program_id(0)
        offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        offs_n = tl.arange(0, BLOCK_N)
        mask_d, mask_n = offs_d < dim, offs_n < nstate
        mask = mask_d[:, None] & mask_n[None, :]
        row = b * dim + offs_d                                              # (BD) in (batch, dim)
        tile = state_ptr + b * s_b + offs_d[:, None] * s_d + offs_n[None, :] * s_n
        if FP64:
            h = tl.load(tile, mask=mask, other=0.0).to(tl.float64)          # (BD BN)
        else:
            h = tl.load(tile, mask=mask, other=0.0).to(tl.float32)
        wide = h.dtype
        x = tl.load(x_ptr + row, mask=mask_d, other=0.0).to(wide)           # (BD)
        dt = tl.load(dt_ptr + row, mask=mask_d, other=0.0).to(wide)
        if HAS_BIAS:
            dt += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(wide)
        if SOFTPLUS:
            dt = tl.where(dt > 20.0, dt, tl.log(1.0 + tl.exp(tl.minimum(dt, 20.0))))
        a = tl.load(a_ptr + offs_d[:, None] * nstate + offs_n[None, :], mask=mask,
                    other=0.0).to(wide)
        bt = tl.load(b_ptr + b * nstate + offs_n, mask=mask_n, other=0.0).to(wide)  # (BN)
        ct = tl.load(c_ptr + b * nstate + offs_n, mask=mask_n, other=0.0).to(wide)
        h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
        tl.store(tile, h, mask=mask)
        y = tl.sum(h * ct[None, :], axis=1)                                 # (BD)
        if HAS_D:
            y += tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(wide) * x
        if HAS_Z:
            z = tl.load(z_ptr + row, mask=mask_d, other=0.0).to(wide)
            y *= z * tl.sigmoid(z)
        tl.store(out_ptr + row, y, mask=mask_d)

    return step


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

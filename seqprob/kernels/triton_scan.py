"""Triton scans (CUDA; on CPU only under ``TRITON_INTERPRET=1``): forward and backward.

Selective scan: one program per ``(batch, block of BLOCK_D channels)`` holds the
``(BLOCK_D, N)`` state tile in registers and walks the length; softplus, the ``D`` skip and the
silu gate are fused in. The forward stores the state every ``CHUNK`` steps; the backward walks
the chunks in reverse, recomputes a chunk's states into a per-program scratch slab
``(batch, dim, CHUNK + 1, N)`` and runs the adjoint recurrence. Reductions over channels and
batch (``dA, dB, dC, dD, ddelta_bias``) use atomic adds. Triton is imported inside the
functions (optional extra ``seqprob[gpu]``); kernels are built on first use.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 32


def _kernels():
    """The Triton kernel module, imported on first use with an error naming the extra."""
    try:
        from seqprob.kernels import triton_kernels
    except ImportError as err:
        raise ImportError("backend='triton' needs Triton: pip install 'seqprob[gpu]'") from err
    return triton_kernels


def _blocks(dim: int, nstate: int) -> tuple[int, int]:
    block_n = 1 << max(0, nstate - 1).bit_length()
    return min(1 << max(0, dim - 1).bit_length(), max(1, 2048 // block_n)), block_n


def _bc_strides(x: Tensor) -> tuple[int, int, int, int]:
    """(batch, dim, N, t) strides of B or C: (batch, N, L) or (dim, N), unused axes 0."""
    if x.dim() == 3:
        return x.stride(0), 0, x.stride(1), x.stride(2)
    return 0, x.stride(0), x.stride(1), 0


class SelectiveScanTriton(torch.autograd.Function):
    """Autograd wrapper around the Triton forward and backward kernels."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        fwd = _kernels().selective_fwd
        wide = torch.float64 if torch.float64 in (u.dtype, A.dtype) else torch.float32
        batch, dim, length = u.shape
        nstate = A.shape[1]
        zeros_d = u.new_zeros(dim, dtype=wide)
        ins = [x.to(wide).contiguous() for x in (u, delta, A, B, C)]
        ins += [D.to(wide).contiguous() if D is not None else zeros_d,
                z.to(wide).contiguous() if z is not None else ins[0],
                delta_bias.to(wide).contiguous() if delta_bias is not None else zeros_d]
        h0 = (initial_state.to(wide).contiguous() if initial_state is not None
              else u.new_zeros(batch, dim, nstate, dtype=wide))
        save = any(ctx.needs_input_grad)
        out = torch.empty_like(ins[0])                                           # (B D L)
        last = torch.empty_like(h0)                                              # (B D N)
        ckpt = u.new_empty(batch, dim, -(-length // CHUNK) if save else 0, nstate, dtype=wide)
        block_d, block_n = _blocks(dim, nstate)
        fwd[(batch, -(-dim // block_d))](
            *ins, h0, out, last, ckpt, dim, length, nstate, *_bc_strides(ins[3]),
            *_bc_strides(ins[4]), HAS_Z=z is not None, SOFTPLUS=delta_softplus, SAVE=save,
            CHUNK=CHUNK, BLOCK_D=block_d, BLOCK_N=block_n)
        if save:
            ctx.ins, ctx.ckpt, ctx.softplus, ctx.has_z = ins, ckpt, delta_softplus, z is not None
            ctx.dtypes = [x.dtype if x is not None else None
                          for x in (u, delta, A, B, C, D, z, delta_bias, initial_state)]
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        bwd = _kernels().selective_bwd
        u, _, A, B, C, D, _, bias = ctx.ins
        batch, dim, length = u.shape
        nstate = A.shape[1]
        dout = dout.to(u.dtype).contiguous() if dout is not None else torch.zeros_like(u)
        dlast = (dlast.to(u.dtype).contiguous() if dlast is not None
                 else u.new_zeros(batch, dim, nstate))
        scratch = u.new_empty(batch, dim, CHUNK + 1, nstate)                      # (B D K+1 N)
        du, ddelta, dz = torch.empty_like(u), torch.empty_like(u), torch.empty_like(u)
        dA, dB, dC = torch.zeros_like(A), torch.zeros_like(B), torch.zeros_like(C)
        dD, dbias, dh0 = torch.zeros_like(D), torch.zeros_like(bias), torch.empty_like(dlast)
        block_d, block_n = _blocks(dim, nstate)
        bwd[(batch, -(-dim // block_d))](
            *ctx.ins, ctx.ckpt, scratch, dout, dlast, du, ddelta, dA, dB, dC, dD, dz, dbias,
            dh0, dim, length, nstate, *_bc_strides(B), *_bc_strides(C), HAS_Z=ctx.has_z,
            SOFTPLUS=ctx.softplus, B_VAR=B.dim() == 3, C_VAR=C.dim() == 3, CHUNK=CHUNK,
            BLOCK_D=block_d, BLOCK_N=block_n)
        grads = (du, ddelta, dA, dB, dC, dD, dz, dbias, dh0)
        out = tuple(None if dtype is None or not need else grad.to(dtype)
                    for grad, dtype, need in zip(grads, ctx.dtypes, ctx.needs_input_grad,
                                                 strict=False))
        return (*out, None)


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Tensor | None = None, z: Tensor | None = None,
                          delta_bias: Tensor | None = None, delta_softplus: bool = False,
                          initial_state: Tensor | None = None, return_last_state: bool = False
                          ) -> Tensor | tuple[Tensor, Tensor]:
    """Same signature and results as ``selective_scan_ref``; Triton kernels, autograd."""
    y, last = SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                        bool(delta_softplus))
    return (y, last) if return_last_state else y

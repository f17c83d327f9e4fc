"""Fused CPU scans (numba): forward and backward never form the ``(batch, length, dim, N)`` tensor.

Selective scan: one parallel task per ``(batch, dim)`` row keeps the N-vector of state in
cache while it walks the row's ``length`` steps. ``u, delta, z`` and the output may be laid
out ``(batch, dim, L)`` or, as ``.mT`` views, ``(batch, L, dim)`` (the Mamba block's layout:
no transposing copies; consecutive rows then share cache lines); ``B, C`` are transposed once
to ``(batch, length, N)`` so each step reads N contiguous values. ``exp(delta * A)`` is
computed once per ``(t, n)`` with a vectorizable fp32 exp (``_exp``, ~1 ulp; fp64 uses libm).
The forward stores the state every ``CHUNK`` steps when gradients are needed
(``batch * dim * length / CHUNK * N`` values); the backward walks the chunks in reverse,
recomputes each chunk's states into a small per-task buffer and runs the adjoint recurrence in
the same pass. Reductions over rows (``dA, dB, dC, dD``) go to one partial buffer per group of
rows (4 groups per thread, handed out dynamically), summed afterwards. The elementwise parts
(softplus of delta, the silu gate and their derivatives) run vectorized in torch around the
kernels.

Shapes are mamba_ssm's (see ``seqprob.core.scan``); inputs arrive validated and in the
compute dtype (fp32 or fp64).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload
from torch import Tensor

from seqprob.kernels.limits import SCAN_MAX_STATE
from seqprob.kernels.threads import launch_threads, parallel_launch

CHUNK = 64  # steps between stored states in the forward; the backward's buffer holds one chunk
_NMAX = SCAN_MAX_STATE  # the largest N the kernels take (``seqprob.core.scan`` checks it)
_LAMT, _DA = _NMAX, 2 * _NMAX  # offsets in the backward's per-task buffer
_JIT = {"fastmath": True, "cache": True}


@intrinsic
def _bits_to_float32(typingctx, bits):
    """Reinterpret an int32 as float32 (builds 2**k for the exp below)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(inline="always", **_JIT)
def _exp32(x):
    """exp for float32 in [-87, 88] (clamped outside): Cody-Waite reduction, degree-6 poly."""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _bits_to_float32(np.int32((np.int32(k) + 127) << 23))


def _exp(x):
    """exp in the dtype of ``x`` (the fast fp32 version, libm for fp64); numba only."""
    return math.exp(x)


@overload(_exp, inline="always")
def _exp_impl(x):
    if x == types.float32:
        return lambda x: _exp32(x)
    return lambda x: math.exp(x)


def _like(x, ref):
    """``x`` cast to the float type of ``ref`` (keeps fp32 kernels in fp32); numba only."""
    return x


@overload(_like, inline="always")
def _like_impl(x, ref):
    if ref == types.float32:
        return lambda x, ref: np.float32(x)
    return lambda x, ref: np.float64(x)


@njit(parallel=True, **_JIT)
def _selective_fwd(u, dt, A, Bm, Cm, Dv, gate, h0, has_gate, b_var, c_var, out, last, ckpt,
                   save):
    """Fill ``out`` (batch, dim, L), ``last`` (batch, dim, N) and, if ``save``, ``ckpt``
    (batch, dim, ceil(L/CHUNK), N) with the state before each chunk."""
    nbatch, dim, length = u.shape
    nstate = A.shape[1]
    for p in prange(nbatch * dim):
        b, d = p // dim, p % dim
        bi, bs = (b, 1) if b_var else (d, 0)
        ci, cs = (b, 1) if c_var else (d, 0)
        a = A[d]
        x = h0[b, d].copy()                                               # (N)
        for t in range(length):
            if save and t % CHUNK == 0:
                ckpt[b, d, t // CHUNK] = x
            ut, dtt = u[b, d, t], dt[b, d, t]
            du = dtt * ut
            tb, tc = t * bs, t * cs
            y = Dv[d] * ut
            for n in range(nstate):
                x[n] = _exp(dtt * a[n]) * x[n] + du * Bm[bi, tb, n]
                y += x[n] * Cm[ci, tc, n]
            out[b, d, t] = y * gate[b, d, t] if has_gate else y
        last[b, d] = x


@njit(inline="always", **_JIT)
def _recompute_chunk(b, d, t0, t1, u, dt, a, Bm, bi, bs, xs, das):
    """States after steps t0..t1-1 into ``xs[1:]`` (``xs[0]`` holds the state before t0) and
    ``exp(dt_t * a)`` into ``das``."""
    for t in range(t0, t1):
        j = t - t0
        dtt = dt[b, d, t]
        du = dtt * u[b, d, t]
        tb = t * bs
        for n in range(a.shape[0]):
            e = _exp(dtt * a[n])
            das[j, n] = e
            xs[j + 1, n] = e * xs[j, n] + du * Bm[bi, tb, n]


@njit(parallel=True, **_JIT)
def _selective_bwd(u, dt, A, Bm, Cm, Dv, gate, has_gate, b_var, c_var, ckpt, dout, dlast,
                   du, ddt, dgate, dh0, dA_p, dB_p, dC_p, dD_p):
    """Adjoint pass. Per-row outputs: du, ddt, dgate (batch, dim, L), dh0 (batch, dim, N).
    Per-group partials (first axis = group of rows): dA_p (G, dim, N), dB_p/dC_p
    (G, *Bm.shape), dD_p (G, dim).

    The per-step loop over N writes one local buffer only (``acc``: the adjoint ``lam``, this
    step's ``lam`` before the decay, and the row's dA, at fixed offsets), so LLVM can vectorize
    it with a few runtime alias checks; the dB/dC partial sums follow in loops of their own."""
    nbatch, dim, length = u.shape
    nstate = A.shape[1]
    groups = dA_p.shape[0]
    rows = nbatch * dim
    for g in prange(groups):
        xs = np.empty((CHUNK + 1, nstate), dtype=u.dtype)               # states of one chunk
        das = np.empty((CHUNK, nstate), dtype=u.dtype)                  # exp(dt * A)
        acc = np.empty(3 * _NMAX, dtype=u.dtype)                        # lam | lam_t | dA row
        for p in range(g * rows // groups, (g + 1) * rows // groups):
            b, d = p // dim, p % dim
            bi, bs = (b, 1) if b_var else (d, 0)
            ci, cs = (b, 1) if c_var else (d, 0)
            a = A[d]
            for n in range(nstate):
                acc[n] = dlast[b, d, n]                                   # adjoint of x_t
                acc[_DA + n] = 0.0
            dD_acc = 0.0
            for c in range((length + CHUNK - 1) // CHUNK - 1, -1, -1):
                t0 = c * CHUNK
                t1 = min(length, t0 + CHUNK)
                xs[0] = ckpt[b, d, c]
                _recompute_chunk(b, d, t0, t1, u, dt, a, Bm, bi, bs, xs, das)
                for t in range(t1 - 1, t0 - 1, -1):
                    j = t - t0
                    ut, dtt = u[b, d, t], dt[b, d, t]
                    tb, tc = t * bs, t * cs
                    gy = dout[b, d, t]
                    if has_gate:
                        ypre = Dv[d] * ut
                        for n in range(nstate):
                            ypre += Cm[ci, tc, n] * xs[j + 1, n]
                        dgate[b, d, t] = gy * ypre
                        gy *= gate[b, d, t]
                    dD_acc += gy * ut
                    s_ga = _like(0.0, ut)                                 # sum lam x_{t-1} e A
                    s_lb = _like(0.0, ut)                                 # sum lam B
                    for n in range(nstate):
                        lam_n = acc[n] + gy * Cm[ci, tc, n]
                        acc[_LAMT + n] = lam_n
                        gexp = lam_n * xs[j, n] * das[j, n]
                        s_ga += gexp * a[n]
                        s_lb += lam_n * Bm[bi, tb, n]
                        acc[_DA + n] += gexp * dtt
                        acc[n] = lam_n * das[j, n]
                    dtu = dtt * ut
                    for n in range(nstate):
                        dB_p[g, bi, tb, n] += acc[_LAMT + n] * dtu
                    for n in range(nstate):
                        dC_p[g, ci, tc, n] += gy * xs[j + 1, n]
                    du[b, d, t] = gy * Dv[d] + dtt * s_lb
                    ddt[b, d, t] = s_ga + ut * s_lb
            for n in range(nstate):
                dh0[b, d, n] = acc[n]
                dA_p[g, d, n] += acc[_DA + n]
            dD_p[g, d] += dD_acc


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _rows(x: Tensor) -> Tensor:
    """A ``(batch, dim, L)`` tensor as the kernels take it: as it is when ``L`` or ``dim`` is
    innermost in memory (a ``.mT`` view of ``(batch, L, dim)`` data, as the Mamba block
    passes; the kernels read through strides), else a contiguous copy."""
    return x if 1 in (x.stride(1), x.stride(2)) else x.contiguous()


def _empty_rows(like: Tensor) -> Tensor:
    """An uninitialized tensor shaped and laid out like ``like`` (batch, dim, L): in
    ``(batch, L, dim)`` memory when ``like`` has ``dim`` innermost, else contiguous."""
    batch, dim, length = like.shape
    if like.stride(1) == 1 and like.stride(2) != 1:
        return like.new_empty(batch, length, dim).mT
    return like.new_empty(batch, dim, length)


def _bc_layout(x: Tensor, wide: torch.dtype) -> Tensor:
    """B or C as the kernel reads them: (batch, N, L) -> (batch, L, N); (dim, N) -> (dim, 1, N)."""
    return (x.to(wide).transpose(1, 2) if x.dim() == 3 else x.to(wide)[:, None, :]).contiguous()


class SelectiveScanCPU(torch.autograd.Function):
    """Autograd wrapper: the elementwise parts (softplus, silu gate) run vectorized in torch,
    the recurrence and its adjoint in the fused kernels."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        wide = torch.float64 if torch.float64 in (u.dtype, A.dtype) else torch.float32
        batch, dim, length = u.shape
        nstate = A.shape[1]
        raw = delta.to(wide)
        if delta_bias is not None:
            raw = raw + delta_bias.to(wide)[:, None]                             # (B D L)
        dt = _rows(F.softplus(raw) if delta_softplus else raw)
        gate = _rows(F.silu(z.to(wide))) if z is not None else raw.new_empty(0, 0, 0)
        h0 = (initial_state.to(wide).contiguous() if initial_state is not None
              else raw.new_zeros(batch, dim, nstate))
        ins = [_rows(u.to(wide)), dt, A.to(wide).contiguous(), _bc_layout(B, wide),
               _bc_layout(C, wide), D.to(wide).contiguous() if D is not None
               else raw.new_zeros(dim), gate]
        save = any(ctx.needs_input_grad)
        out = _empty_rows(ins[0])                                                 # (B D L)
        last = raw.new_empty(batch, dim, nstate)                                  # (B D N)
        ckpt = raw.new_empty(batch, dim, -(-length // CHUNK) if save else 0, nstate)
        with parallel_launch(batch * dim):
            _selective_fwd(*(x.detach().numpy() for x in ins), _np(h0), z is not None,
                           B.dim() == 3,
                           C.dim() == 3, out.numpy(), last.numpy(), ckpt.numpy(), save)
        if save:
            ctx.ins, ctx.ckpt, ctx.raw, ctx.softplus = ins, ckpt, raw, delta_softplus
            ctx.z = z.to(wide) if z is not None else None
            ctx.b_var, ctx.c_var = B.dim() == 3, C.dim() == 3
            ctx.specs = [None if x is None else (x.shape, x.dtype)
                         for x in (u, delta, A, B, C, D, z, delta_bias, initial_state)]
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, _, A, Bm, Cm, _, _ = ctx.ins
        batch, dim = u.shape[:2]
        groups = min(batch * dim, 4 * launch_threads())
        dout = _rows(dout.to(u.dtype)) if dout is not None else torch.zeros_like(u)
        dlast = (dlast.to(u.dtype).contiguous() if dlast is not None
                 else u.new_zeros(batch, dim, A.shape[1]))
        du, ddt = _empty_rows(u), _empty_rows(u)                                  # (B D L)
        dgate = _empty_rows(ctx.ins[6]) if ctx.z is not None else u.new_empty(0, 0, 0)
        dh0 = torch.empty_like(dlast)                          # the kernel writes every entry
        dA, dB, dC = (u.new_zeros(groups, *x.shape) for x in (A, Bm, Cm))
        dD = u.new_zeros(groups, dim)
        with parallel_launch(groups):
            _selective_bwd(*(x.detach().numpy() for x in ctx.ins), ctx.z is not None,
                           ctx.b_var, ctx.c_var, ctx.ckpt.numpy(), dout.detach().numpy(),
                           _np(dlast),
                           *(x.numpy() for x in (du, ddt, dgate, dh0, dA, dB, dC, dD)))
        # one fused pass each: ddt * sigmoid(raw) (F.softplus's threshold 20 included) and
        # dgate * silu'(z)
        ddelta = (torch.ops.aten.softplus_backward(ddt, ctx.raw, 1, 20) if ctx.softplus
                  else ddt)                                                           # (B D L)
        dz = torch.ops.aten.silu_backward(dgate, ctx.z) if ctx.z is not None else None
        dB, dC = dB.sum(0), dC.sum(0)
        grads = (du, ddelta, dA.sum(0), dB.transpose(1, 2) if ctx.b_var else dB[:, 0],
                 dC.transpose(1, 2) if ctx.c_var else dC[:, 0], dD.sum(0), dz,
                 ddelta.sum((0, 2)), dh0)
        out = tuple(None if spec is None or not need else grad.to(spec[1]).reshape(spec[0])
                    for grad, spec, need in zip(grads, ctx.specs, ctx.needs_input_grad,
                                                strict=False))
        return (*out, None)


def selective_scan_cpu(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Tensor | None = None, z: Tensor | None = None,
                       delta_bias: Tensor | None = None, delta_softplus: bool = False,
                       initial_state: Tensor | None = None, return_last_state: bool = False
                       ) -> Tensor | tuple[Tensor, Tensor]:
    """Same signature and results as ``selective_scan_ref``; fused numba kernels, autograd."""
    y, last = SelectiveScanCPU.apply(u, delta, A, B, C, D, z, delta_bias, initial_state,
                                     bool(delta_softplus))
    return (y, last) if return_last_state else y

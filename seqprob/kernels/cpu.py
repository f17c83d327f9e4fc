"""Fused CPU scans (numba): forward and backward never form the ``(batch, length, dim, N)`` tensor.

Selective scan, two kernel pairs over the same arithmetic:

- channel kernels (``_channels_fwd``/``_channels_bwd``), for ``(batch, L, dim)`` data with
  time-varying ``B, C``: the Mamba block's call, its ``.mT`` views read without copies. One
  parallel task per ``(batch, WIDTH channels)`` keeps the ``(N, WIDTH)`` state tile in cache;
  every inner loop runs over channels with unit stride, so LLVM vectorizes it 16-wide (fp32)
  with ``B_t, C_t`` broadcast, and no horizontal sums in the forward.
- row kernels (``_selective_fwd``/``_selective_bwd``), for every other case (fixed ``B`` or
  ``C``, ``(batch, dim, L)`` data): one task per ``(batch, dim)`` row walks its ``length``
  steps with the N-vector of state in registers; ``u, delta, z`` are read through strides.
  Transposing ``(batch, dim, L)`` data for the channel kernels would cost more than they save
  (a strided transpose of one ``(2, 768, 1024)`` tensor alone takes ~6 ms).

``B, C`` are transposed once to ``(batch, length, N)``; ``exp(delta * A)`` is computed once per
``(t, n)`` with a vectorizable fp32 exp (``_exp``, ~1 ulp; fp64 uses libm). The forward stores
the state every ``CHUNK`` steps when gradients are needed; the backward walks the chunks in
reverse, recomputes each chunk's states and ``exp(delta A)`` into per-task buffers and runs the
adjoint recurrence. Reductions over rows or channels (``dA, dB, dC, dD``) go to per-task or
per-group partial buffers, summed afterwards (no atomics, deterministic). The elementwise parts
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
WIDTH = 64  # channels per task of the channel kernels (the state tile is (N, WIDTH))
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
    """exp for float32, ~1 ulp: Cody-Waite reduction, degree-6 poly, times ``2**k`` built from
    its bits. The argument is clamped to [-87, 89]: from 88.38 on ``k = 128``, whose bit
    pattern is inf, so the result overflows to inf (libm's exp from 88.72; the last factor
    1.5 below FLT_MAX is given up to keep one multiply) and a growing mode fails the
    caller's finiteness check instead of saturating at ~1e38."""
    x = min(max(x, np.float32(-87.0)), np.float32(89.0))
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


@njit(inline="always", **_JIT)
def _log1p32(t):
    """log(1 + t) for float32 ``t`` in [0, 1], vectorizable: ``2 atanh(s)`` with
    ``s = t / (2 + t)`` in [0, 1/3] (no cancellation for small ``t``), odd series to s**15
    (truncation < 2e-9 relative)."""
    s = t / (np.float32(2.0) + t)
    w = s * s
    p = np.float32(1 / 15)
    p = p * w + np.float32(1 / 13)
    p = p * w + np.float32(1 / 11)
    p = p * w + np.float32(1 / 9)
    p = p * w + np.float32(1 / 7)
    p = p * w + np.float32(1 / 5)
    p = p * w + np.float32(1 / 3)
    return np.float32(2.0) * s * (p * w + np.float32(1.0))


def _log1p01(t):
    """log(1 + t) for ``t`` in [0, 1] in the dtype of ``t`` (the series above for fp32,
    libm for fp64); numba only."""
    return math.log1p(t)


@overload(_log1p01, inline="always")
def _log1p01_impl(t):
    if t == types.float32:
        return lambda t: _log1p32(t)
    return lambda t: math.log1p(t)


@njit(inline="always", **_JIT)
def _softplus(x):
    """``log(1 + exp(x))`` without overflow and without a branch (vectorizable in fp32):
    ``max(x, 0) + log1p(exp(-|x|))``, ``x`` itself to rounding for large ``x``."""
    return max(x, _like(0.0, x)) + _log1p01(_exp(-abs(x)))


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


@njit(parallel=True, **_JIT)
def _channels_fwd(u, dt, At, Bm, Cm, Dv, gate, h0, has_gate, width, out, last, ckpt, save):
    """The forward over ``(batch, L, dim)`` data, ``width`` channels per task, the state tile
    ``(N, width)`` in cache: every loop over channels is a unit-stride vector loop. ``At``
    (N, dim); ``Bm, Cm`` (batch, L, N); ``h0, last`` (batch, dim, N); ``ckpt``
    (batch, ceil(L/CHUNK), N, dim), the state before each chunk."""
    nbatch, length, dim = u.shape
    nstate = At.shape[0]
    nblock = (dim + width - 1) // width
    for p in prange(nbatch * nblock):
        b, c0 = p // nblock, (p % nblock) * width
        c1 = min(dim, c0 + width)
        wn = c1 - c0
        x = np.empty((nstate, wn), dtype=u.dtype)
        for n in range(nstate):
            for w in range(wn):
                x[n, w] = h0[b, c0 + w, n]
        a = At[:, c0:c1].copy()
        dv = Dv[c0:c1].copy()
        vec = np.empty((2, wn), dtype=u.dtype)                # dt * u | y
        dul, yl = vec[0], vec[1]
        for t in range(length):
            if save and t % CHUNK == 0:
                ckpt[b, t // CHUNK, :, c0:c1] = x
            dtl, ul = dt[b, t, c0:c1], u[b, t, c0:c1]
            for w in range(wn):
                dul[w] = dtl[w] * ul[w]
                yl[w] = dv[w] * ul[w]
            for n in range(nstate):
                bn, cn = Bm[b, t, n], Cm[b, t, n]
                xn, an = x[n], a[n]
                for w in range(wn):
                    v = _exp(dtl[w] * an[w]) * xn[w] + dul[w] * bn
                    xn[w] = v
                    yl[w] += v * cn
            o = out[b, t, c0:c1]
            if has_gate:
                g = gate[b, t, c0:c1]
                for w in range(wn):
                    o[w] = yl[w] * g[w]
            else:
                o[:] = yl
        for n in range(nstate):
            for w in range(wn):
                last[b, c0 + w, n] = x[n, w]


@njit(parallel=True, **_JIT)
def _channels_bwd(u, dt, At, Bm, Cm, Dv, gate, has_gate, width, ckpt, dout, dlast,
           du, ddt, dgate, dh0, dA_p, dB_p, dC_p, dD_p):
    """Adjoint of ``_channels_fwd`` (same layouts). Per-task outputs: dh0 (batch, dim, N),
    dA_p (batch, N, dim), dD_p (batch, dim), dB_p/dC_p (blocks, batch, L, N): each task writes
    its own slices, summed afterwards. Each chunk's states and ``exp(dt A)`` are recomputed
    into per-task buffers, then the adjoint runs backwards over the chunk."""
    nbatch, length, dim = u.shape
    nstate = At.shape[0]
    nblock = (dim + width - 1) // width
    for p in prange(nbatch * nblock):
        b, blk = p // nblock, p % nblock
        c0 = blk * width
        c1 = min(dim, c0 + width)
        wn = c1 - c0
        a = At[:, c0:c1].copy()
        dv = Dv[c0:c1].copy()
        st = np.empty((2 * nstate + 4, wn), dtype=u.dtype)   # lam | dA | s_ga | s_lb | dtu | gy
        for n in range(nstate):
            for w in range(wn):
                st[n, w] = dlast[b, c0 + w, n]
                st[nstate + n, w] = 0.0
        sga, slb, dtu, gy = (st[2 * nstate], st[2 * nstate + 1], st[2 * nstate + 2],
                             st[2 * nstate + 3])
        dd = np.zeros(wn, dtype=u.dtype)
        xs = np.empty((CHUNK + 1, nstate, wn), dtype=u.dtype)
        das = np.empty((CHUNK, nstate, wn), dtype=u.dtype)
        for c in range((length + CHUNK - 1) // CHUNK - 1, -1, -1):
            t0 = c * CHUNK
            t1 = min(length, t0 + CHUNK)
            xs[0] = ckpt[b, c, :, c0:c1]
            for t in range(t0, t1):
                j = t - t0
                dtl, ul = dt[b, t, c0:c1], u[b, t, c0:c1]
                for w in range(wn):
                    dtu[w] = dtl[w] * ul[w]
                for n in range(nstate):
                    bn = Bm[b, t, n]
                    an, e_, xp, xq = a[n], das[j, n], xs[j, n], xs[j + 1, n]
                    for w in range(wn):
                        e = _exp(dtl[w] * an[w])
                        e_[w] = e
                        xq[w] = e * xp[w] + dtu[w] * bn
            for t in range(t1 - 1, t0 - 1, -1):
                j = t - t0
                dtl, ul, go = dt[b, t, c0:c1], u[b, t, c0:c1], dout[b, t, c0:c1]
                if has_gate:
                    g, dg = gate[b, t, c0:c1], dgate[b, t, c0:c1]
                    for w in range(wn):
                        dg[w] = dv[w] * ul[w]
                    for n in range(nstate):
                        cn, xq = Cm[b, t, n], xs[j + 1, n]
                        for w in range(wn):
                            dg[w] += cn * xq[w]
                    for w in range(wn):
                        dg[w] *= go[w]
                        gy[w] = go[w] * g[w]
                else:
                    gy[:] = go
                for w in range(wn):
                    dd[w] += gy[w] * ul[w]
                    dtu[w] = dtl[w] * ul[w]
                    sga[w] = 0.0
                    slb[w] = 0.0
                for n in range(nstate):
                    bn, cn = Bm[b, t, n], Cm[b, t, n]
                    an, e_, xp, xq = a[n], das[j, n], xs[j, n], xs[j + 1, n]
                    lam, dan = st[n], st[nstate + n]
                    accb = _like(0.0, bn)
                    accc = _like(0.0, bn)
                    for w in range(wn):
                        lam_n = lam[w] + gy[w] * cn
                        gexp = lam_n * xp[w] * e_[w]
                        sga[w] += gexp * an[w]
                        slb[w] += lam_n * bn
                        dan[w] += gexp * dtl[w]
                        lam[w] = lam_n * e_[w]
                        accb += lam_n * dtu[w]
                        accc += gy[w] * xq[w]
                    dB_p[blk, b, t, n] = accb
                    dC_p[blk, b, t, n] = accc
                dui, ddti = du[b, t, c0:c1], ddt[b, t, c0:c1]
                for w in range(wn):
                    dui[w] = gy[w] * dv[w] + dtl[w] * slb[w]
                    ddti[w] = sga[w] + ul[w] * slb[w]
        for n in range(nstate):
            for w in range(wn):
                dh0[b, c0 + w, n] = st[n, w]
                dA_p[b, n, c0 + w] = st[nstate + n, w]
        for w in range(wn):
            dD_p[b, c0 + w] = dd[w]


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _rows(x: Tensor) -> Tensor:
    """A ``(batch, dim, L)`` tensor as the row kernels take it: as it is when ``L`` or ``dim``
    is innermost in memory (the kernels read through strides), else a contiguous copy."""
    return x if 1 in (x.stride(1), x.stride(2)) else x.contiguous()


def _cols(x: Tensor) -> Tensor:
    """A ``(batch, dim, L)`` tensor as the channel kernels take it: ``(batch, L, dim)``
    contiguous (no copy for a ``.mT`` view of such data)."""
    return x.mT.contiguous()


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


def _use_channels(u: Tensor, B: Tensor, C: Tensor) -> bool:
    """The channel kernels run when B and C vary in time and ``u`` has ``dim`` innermost in
    memory (the Mamba block's ``.mT`` views); the row kernels run otherwise: transposing
    ``(batch, dim, L)`` data would cost more than the channel kernels save."""
    return B.dim() == 3 and C.dim() == 3 and u.stride(1) == 1 and u.stride(2) != 1


def _forward(ins: list[Tensor], h0: Tensor, has_gate: bool, b_var: bool, c_var: bool,
             channels: bool, save: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Run the forward kernel: ``y`` (batch, dim, L) (a ``.mT`` view for the channel kernel),
    the last state (batch, dim, N) and the checkpoints (empty unless ``save``)."""
    u = ins[0]
    nstate = h0.shape[2]
    arrays = [x.detach().numpy() for x in ins]
    if channels:
        batch, length, dim = u.shape
        out = u.new_empty(batch, length, dim)                                     # (B L D)
        ckpt = u.new_empty(batch, -(-length // CHUNK) if save else 0, nstate, dim)
        last = u.new_empty(batch, dim, nstate)
        with parallel_launch(batch * -(-dim // WIDTH)):
            _channels_fwd(*arrays, _np(h0), has_gate, WIDTH, out.numpy(), last.numpy(),
                          ckpt.numpy(), save)
        return out.mT, last, ckpt
    batch, dim, length = u.shape
    out = _empty_rows(u)                                                          # (B D L)
    ckpt = u.new_empty(batch, dim, -(-length // CHUNK) if save else 0, nstate)
    last = u.new_empty(batch, dim, nstate)
    with parallel_launch(batch * dim):
        _selective_fwd(*arrays, _np(h0), has_gate, b_var, c_var, out.numpy(), last.numpy(),
                       ckpt.numpy(), save)
    return out, last, ckpt


def _backward(ctx, dout: Tensor | None, dlast: Tensor | None) -> list[Tensor]:
    """Run the backward kernel: du, ddt, dgate in the layout of ``u`` as the kernel got it,
    dh0 (batch, dim, N), dA (dim, N), dB and dC in ``_bc_layout``'s shapes, dD (dim)."""
    u, at = ctx.ins[0], ctx.ins[2]
    nstate = ctx.h0_shape[2]
    batch, dim = ctx.h0_shape[:2]
    lay = _cols if ctx.channels else _rows
    dout = lay(dout.to(u.dtype)) if dout is not None else torch.zeros_like(u)
    dlast = (dlast.to(u.dtype).contiguous() if dlast is not None
             else u.new_zeros(batch, dim, nstate))
    arrays = [x.detach().numpy() for x in ctx.ins]
    du, ddt = torch.empty_like(u), torch.empty_like(u)
    dgate = torch.empty_like(u) if ctx.z is not None else u.new_empty(0, 0, 0)
    dh0 = torch.empty_like(dlast)                              # the kernel writes every entry
    if ctx.channels:
        blocks = -(-dim // WIDTH)
        dA, dD = u.new_empty(batch, *at.shape), u.new_empty(batch, dim)
        dB, dC = (u.new_empty(blocks, *x.shape) for x in ctx.ins[3:5])
        with parallel_launch(batch * blocks):
            _channels_bwd(*arrays, ctx.z is not None, WIDTH, ctx.ckpt.numpy(),
                          dout.detach().numpy(), _np(dlast),
                          *(x.numpy() for x in (du, ddt, dgate, dh0, dA, dB, dC, dD)))
        return [du.mT, ddt.mT, dgate.mT, dh0, dA.sum(0).T, dB.sum(0), dC.sum(0), dD.sum(0)]
    groups = min(batch * dim, 4 * launch_threads())
    dA, dB, dC = (u.new_zeros(groups, *x.shape) for x in (at, *ctx.ins[3:5]))
    dD = u.new_zeros(groups, dim)
    with parallel_launch(groups):
        _selective_bwd(*arrays, ctx.z is not None, ctx.b_var, ctx.c_var, ctx.ckpt.numpy(),
                       dout.detach().numpy(), _np(dlast),
                       *(x.numpy() for x in (du, ddt, dgate, dh0, dA, dB, dC, dD)))
    return [du, ddt, dgate, dh0, dA.sum(0), dB.sum(0), dC.sum(0), dD.sum(0)]


class SelectiveScanCPU(torch.autograd.Function):
    """Autograd wrapper: the elementwise parts (softplus, silu gate) run vectorized in torch,
    the recurrence and its adjoint in the fused kernels (channel or row kernels, see
    ``_use_channels``)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus):
        wide = torch.float64 if torch.float64 in (u.dtype, A.dtype) else torch.float32
        batch, dim, _ = u.shape
        nstate = A.shape[1]
        channels = _use_channels(u, B, C)
        lay = _cols if channels else _rows
        raw = delta.to(wide)
        if delta_bias is not None:
            raw = raw + delta_bias.to(wide)[:, None]                             # (B D L)
        dt = F.softplus(raw) if delta_softplus else raw
        h0 = (initial_state.to(wide).contiguous() if initial_state is not None
              else raw.new_zeros(batch, dim, nstate))
        ins = [lay(u.to(wide)), lay(dt),
               A.to(wide).T.contiguous() if channels else A.to(wide).contiguous(),
               _bc_layout(B, wide), _bc_layout(C, wide),
               D.to(wide).contiguous() if D is not None else raw.new_zeros(dim),
               lay(F.silu(z.to(wide))) if z is not None else raw.new_empty(0, 0, 0)]
        save = any(ctx.needs_input_grad)
        out, last, ckpt = _forward(ins, h0, z is not None, B.dim() == 3, C.dim() == 3,
                                   channels, save)
        if save:
            ctx.ins, ctx.ckpt, ctx.raw, ctx.softplus = ins, ckpt, raw, delta_softplus
            ctx.z = z.to(wide) if z is not None else None
            ctx.b_var, ctx.c_var, ctx.channels = B.dim() == 3, C.dim() == 3, channels
            ctx.h0_shape = h0.shape
            ctx.specs = [None if x is None else (x.shape, x.dtype)
                         for x in (u, delta, A, B, C, D, z, delta_bias, initial_state)]
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, dlast):
        du, ddt, dgate, dh0, dA, dB, dC, dD = _backward(ctx, dout, dlast)
        # one fused pass each: ddt * sigmoid(raw) (F.softplus's threshold 20 included) and
        # dgate * silu'(z)
        ddelta = (torch.ops.aten.softplus_backward(ddt, ctx.raw, 1, 20) if ctx.softplus
                  else ddt)                                                           # (B D L)
        dz = torch.ops.aten.silu_backward(dgate, ctx.z) if ctx.z is not None else None
        grads = (du, ddelta, dA, dB.transpose(1, 2) if ctx.b_var else dB[:, 0],
                 dC.transpose(1, 2) if ctx.c_var else dC[:, 0], dD, dz,
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

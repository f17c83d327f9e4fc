"""Fused CPU single-token steps (numba): mamba_ssm's ``selective_state_update`` in one pass
over the state, and the whole Mamba block step between its two dense projections.

``_state_update``: one loop over ``(batch, dim)`` rows: the row's ``dt`` (bias, softplus),
its N state entries decayed and fed in place, the output's dot product, skip term and gate,
without any ``(batch, dim, N)`` temporary.

``_block_step``: one token of a Mamba block from its ``in_proj`` output to the input of its
``out_proj``: the convolution window's shift, the depthwise convolution, bias and SiLU, the
``x_proj`` GEMV (``dt_low, B, C``), the ``dt_proj`` GEMV with bias and softplus, the state
update, ``y = C h + D u`` and the gate ``y * silu(z)``. Generation runs this once per layer
and token, so the ~12 small torch ops it replaces (tens of microseconds each) were most of
the step's time at d_model 256.

Decays use the vectorized fp32 exp of ``seqprob.kernels.cpu`` (it overflows to inf just
below ln(FLT_MAX), so a growing mode outside Mamba's parametrization gives inf, which the
checked op refuses). Sequential: at generation sizes (a few thousand rows of N = 16) the
work is tens of microseconds, less than waking a thread pool. Inputs arrive validated.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numba import njit
from torch import Tensor, nn

from seqprob.kernels.cpu import _exp, _like, _softplus

_JIT = {"fastmath": True, "cache": True}


@njit(inline="always", **_JIT)
def _silu(v):
    return v / (1 + _exp(-v))


@njit(inline="always", **_JIT)
def _row_update(h_in, h_out, a, step, u, Bv, Cv):
    """``h_out = exp(step a) h_in + step u B`` over the row's N entries; returns ``C . h_out``."""
    feed = step * u
    y = _like(0.0, u)
    for n in range(a.shape[0]):
        h = _exp(step * a[n]) * h_in[n] + feed * Bv[n]
        h_out[n] = h
        y += h * Cv[n]
    return y


@njit(**_JIT)
def _state_update(state, x, dt, A, B, C, D, z, bias, softplus, out):
    batch, dim, _ = state.shape
    for b in range(batch):
        for d in range(dim):
            step = dt[b, d]
            if bias.size:
                step += bias[d]
            if softplus:
                step = _softplus(step)
            u = x[b, d]
            y = _row_update(state[b, d], state[b, d], A[d], step, u, B[b], C[b])
            if D.size:
                y += D[d] * u
            if z.size:
                y *= _silu(z[b, d])
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


class BlockStepWeights(NamedTuple):
    """A Mamba block's weights as ``_block_step`` reads them: contiguous numpy arrays of one
    dtype (fp32 or fp64) that own their memory (``M`` = d_model, ``Di`` = d_inner, ``K`` =
    d_conv, ``R`` = dt_rank); a missing bias is an empty array."""

    in_w: np.ndarray       # (2 Di, M)
    in_b: np.ndarray       # (2 Di,) or (0,)
    conv_w: np.ndarray     # (Di, K)
    conv_b: np.ndarray     # (Di,) or (0,)
    x_proj: np.ndarray     # (R + 2N, Di)
    dt_proj_t: np.ndarray  # (R, Di): dt_proj's weight transposed (the GEMV runs over channels)
    dt_bias: np.ndarray    # (Di,)
    A: np.ndarray          # (Di, N), -exp(A_log)
    D: np.ndarray          # (Di,)
    out_w: np.ndarray      # (M, Di)
    out_b: np.ndarray      # (M,) or (0,)


def block_step_weights(in_proj: nn.Linear, conv1d: nn.Conv1d, x_proj: nn.Linear,
                       dt_proj: nn.Linear, A: Tensor, D: Tensor, out_proj: nn.Linear,
                       dtype: torch.dtype) -> BlockStepWeights:
    """Copies of a Mamba block's weights in ``dtype`` (``A`` = -exp(A_log), ``(Di, N)``)."""
    def arr(x: Tensor | None) -> np.ndarray:
        x = torch.empty(0) if x is None else x.detach()
        return x.to(dtype=dtype, copy=True).contiguous().numpy()
    return BlockStepWeights(arr(in_proj.weight), arr(in_proj.bias), arr(conv1d.weight[:, 0]),
                            arr(conv1d.bias), arr(x_proj.weight), arr(dt_proj.weight.T),
                            arr(dt_proj.bias), arr(A), arr(D), arr(out_proj.weight),
                            arr(out_proj.bias))


@njit(inline="always", **_JIT)
def _gemm(w, bias, x, out):
    """``out = x w^T + bias``: ``w`` (rows, cols) row-major, ``x`` (batch, cols), ``out``
    (batch, rows); one unit-stride dot per (row, batch entry), the row read from memory once
    for the whole batch (generation is bound by streaming the weights)."""
    for j in range(w.shape[0]):
        w_j = w[j]
        for b in range(x.shape[0]):
            s = bias[j] if bias.size else _like(0.0, x[0, 0])
            x_b = x[b]
            for i in range(w.shape[1]):
                s += w_j[i] * x_b[i]
            out[b, j] = s


@njit(inline="always", **_JIT)
def _rms_norm(x, weight, eps, out):
    """``out[b] = x[b] / rms(x[b]) * weight`` (``eps`` inside the root), rows of ``x``."""
    for b in range(x.shape[0]):
        ms = _like(0.0, x[0, 0])
        for i in range(x.shape[1]):
            ms += x[b, i] * x[b, i]
        scale = 1 / math.sqrt(ms / x.shape[1] + eps)
        for i in range(x.shape[1]):
            out[b, i] = x[b, i] * scale * weight[i]


@njit(inline="always", **_JIT)
def _conv_silu(conv, conv_w, conv_b, xz, conv_out, u):
    """The convolution window shifted by the new input ``xz[:, :Di]`` into ``conv_out``, the
    depthwise convolution, bias and SiLU into ``u`` (batch, Di)."""
    dim, width = conv_w.shape
    for b in range(u.shape[0]):
        for d in range(dim):
            acc = conv_w[d, width - 1] * xz[b, d]
            for k in range(width - 1):
                acc += conv_w[d, k] * conv[b, d, k]
                conv_out[b, d, k] = conv[b, d, k + 1] if k < width - 2 else xz[b, d]
            u[b, d] = acc
        for d in range(dim):
            u[b, d] = _silu(u[b, d] + conv_b[d] if conv_b.size else u[b, d])


@njit(inline="always", **_JIT)
def _ssm_gate(ssm, dbc, u, xz, dt_proj_t, dt_bias, A, D, ssm_out, step, gated):
    """dt_proj, softplus, the state update into ``ssm_out``, ``C h + D u`` and the gate
    ``silu(z)`` into ``gated`` (batch, Di); ``step`` (Di,) is workspace."""
    rank, nstate = dt_proj_t.shape[0], A.shape[1]
    dim = A.shape[0]
    for b in range(u.shape[0]):
        step[:] = dt_bias
        for r in range(rank):                                 # dt_proj, over channels
            w_r, low = dt_proj_t[r], dbc[b, r]
            for d in range(dim):
                step[d] += w_r[d] * low
        for d in range(dim):
            step[d] = _softplus(step[d])
        Bv, Cv = dbc[b, rank:rank + nstate], dbc[b, rank + nstate:]
        for d in range(dim):
            gated[b, d] = _row_update(ssm[b, d], ssm_out[b, d], A[d], step[d], u[b, d], Bv, Cv)
        for d in range(dim):
            gated[b, d] = (gated[b, d] + D[d] * u[b, d]) * _silu(xz[b, dim + d])


@njit(**_JIT)
def _block_step(x, conv, ssm, norm_w, eps, residual, in_w, in_b, conv_w, conv_b, x_proj,
                dt_proj_t, dt_bias, A, D, out_w, out_b, conv_out, ssm_out, y):
    """``x`` (batch, M) the input, ``conv`` (batch, Di, K-1) and ``ssm`` (batch, Di, N) the
    states in; writes ``y`` (batch, M) and the new states ``conv_out``, ``ssm_out``. With
    ``norm_w`` (M,) (not empty) the block reads ``rms_norm(x) * norm_w`` (``eps`` inside the
    root); with ``residual``, ``y = x + block(...)``. Weights as in ``BlockStepWeights``.
    Loops over channels are unit-stride (vectorized); the state update runs row by row."""
    batch, dim = x.shape[0], A.shape[0]
    if norm_w.size:
        xn = np.empty_like(x)
        _rms_norm(x, norm_w, eps, xn)
    else:
        xn = x
    xz = np.empty((batch, 2 * dim), dtype=x.dtype)                   # in_proj: x | z
    u = np.empty((batch, dim), dtype=x.dtype)                        # conv, SiLU
    dbc = np.empty((batch, x_proj.shape[0]), dtype=x.dtype)          # dt_low | B | C
    gated = np.empty((batch, dim), dtype=x.dtype)                    # out_proj's input
    _gemm(in_w, in_b, xn, xz)
    _conv_silu(conv, conv_w, conv_b, xz, conv_out, u)
    _gemm(x_proj, x_proj[:0, 0], u, dbc)
    _ssm_gate(ssm, dbc, u, xz, dt_proj_t, dt_bias, A, D, ssm_out, np.empty(dim, x.dtype), gated)
    _gemm(out_w, out_b, gated, y)
    if residual:
        y += x


def _np(x: Tensor) -> np.ndarray:
    return (x.detach() if x.requires_grad else x).contiguous().numpy()


@njit(**_JIT)
def _linear(w, bias, x, out):
    _gemm(w, bias, x, out)


def linear_cpu(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight.T`` for a few rows ``x`` (batch, in) and ``weight`` (out, in) of one
    dtype (fp32 or fp64), the weight streamed from memory once: a language model's head at
    generation (mamba-130m's, 154 MB: 5.6 ms vs torch's 11.3 ms at batch 1, one thread).
    Not differentiable."""
    out = x.new_empty(x.shape[0], weight.shape[0])
    _linear(_np(weight), _np(weight)[0, :0], _np(x), out.numpy())
    return out


def mamba_block_step_cpu(x: Tensor, conv: Tensor, ssm: Tensor, weights: BlockStepWeights,
                         norm: tuple[Tensor, float] | None = None, residual: bool = False
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """One token of a Mamba block: ``x`` (batch, M), ``conv`` (batch, Di, K-1), ``ssm``
    (batch, Di, N), all in the weights' dtype. ``norm`` = ``(weight (M,), eps)``: the block
    reads ``rms_norm(x) * weight``; ``residual``: ``x`` is added to its output (a pre-norm
    residual layer in one call). Returns ``y`` (batch, M) and the new conv and SSM states
    (fresh tensors: the states passed in are not modified)."""
    conv_out, ssm_out, y = torch.empty_like(conv), torch.empty_like(ssm), torch.empty_like(x)
    norm_w, eps = (_np(norm[0]), norm[1]) if norm is not None else (weights.D[:0], 0.0)
    _block_step(_np(x), _np(conv), _np(ssm), norm_w, float(eps), bool(residual), *weights,
                conv_out.numpy(), ssm_out.numpy(), y.numpy())
    return y, conv_out, ssm_out

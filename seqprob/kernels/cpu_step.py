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

Decays use the vectorized fp32 exp of ``seqprob.kernels.cpu`` (it overflows to inf past
ln(FLT_MAX), so a growing mode outside Mamba's parametrization gives inf, which the checked
op refuses). Sequential: at generation sizes (a few thousand rows of N = 16) the work is tens
of microseconds, less than waking a thread pool. Inputs arrive validated.
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
def _gemv(w, bias, x, out):
    """``out = w x + bias``: ``w`` (rows, cols) row-major, one unit-stride dot per row."""
    for j in range(w.shape[0]):
        s = bias[j] if bias.size else _like(0.0, x[0])
        for i in range(w.shape[1]):
            s += w[j, i] * x[i]
        out[j] = s


@njit(**_JIT)
def _block_step(x, conv, ssm, norm_w, eps, residual, in_w, in_b, conv_w, conv_b, x_proj,
                dt_proj_t, dt_bias, A, D, out_w, out_b, conv_out, ssm_out, y):
    """``x`` (batch, M) the input, ``conv`` (batch, Di, K-1) and ``ssm`` (batch, Di, N) the
    states in; writes ``y`` (batch, M) and the new states ``conv_out``, ``ssm_out``. With
    ``norm_w`` (M,) (not empty) the block reads ``rms_norm(x) * norm_w`` (``eps`` inside the
    root); with ``residual``, ``y = x + block(...)``. Weights as in ``BlockStepWeights``.
    Loops over channels are unit-stride (vectorized); the state update runs row by row."""
    dim, width = conv_w.shape
    rank, nstate = dt_proj_t.shape[0], A.shape[1]
    xn = np.empty(x.shape[1], dtype=x.dtype)                         # the normed input
    xz = np.empty(2 * dim, dtype=x.dtype)                            # in_proj: x | z
    u = np.empty(dim, dtype=x.dtype)                                 # conv, SiLU
    step = np.empty(dim, dtype=x.dtype)                              # softplus(dt)
    gated = np.empty(dim, dtype=x.dtype)                             # out_proj's input
    dbc = np.empty(x_proj.shape[0], dtype=x.dtype)                   # dt_low | B | C
    for b in range(x.shape[0]):
        xn[:] = x[b]
        if norm_w.size:
            ms = _like(0.0, xn[0])
            for i in range(xn.shape[0]):
                ms += xn[i] * xn[i]
            scale = 1 / math.sqrt(ms / xn.shape[0] + eps)
            for i in range(xn.shape[0]):
                xn[i] *= scale * norm_w[i]
        _gemv(in_w, in_b, xn, xz)
        for d in range(dim):                                  # window shift and conv
            acc = conv_w[d, width - 1] * xz[d]
            for k in range(width - 1):
                acc += conv_w[d, k] * conv[b, d, k]
                conv_out[b, d, k] = conv[b, d, k + 1] if k < width - 2 else xz[d]
            u[d] = acc
        for d in range(dim):
            v = u[d] + conv_b[d] if conv_b.size else u[d]
            u[d] = _silu(v)
        _gemv(x_proj, x_proj[:0, 0], u, dbc)
        step[:] = dt_bias
        for r in range(rank):                                 # dt_proj, over channels
            w_r, low = dt_proj_t[r], dbc[r]
            for d in range(dim):
                step[d] += w_r[d] * low
        for d in range(dim):
            step[d] = _softplus(step[d])
        Bv, Cv = dbc[rank:rank + nstate], dbc[rank + nstate:]
        for d in range(dim):                                  # the state update
            gated[d] = _row_update(ssm[b, d], ssm_out[b, d], A[d], step[d], u[d], Bv, Cv)
        for d in range(dim):                                  # skip term and gate
            gated[d] = (gated[d] + D[d] * u[d]) * _silu(xz[dim + d])
        _gemv(out_w, out_b, gated, y[b])
        if residual:
            y[b] += x[b]


def _np(x: Tensor) -> np.ndarray:
    return (x.detach() if x.requires_grad else x).contiguous().numpy()


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

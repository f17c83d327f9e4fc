"""Fused CPU forward-backward for HMMs with few states (numba).

For small K a step of the GEMM formulation is a few microseconds of arithmetic behind several
framework dispatches; this kernel runs the whole recursion per sequence in compiled loops
(sequences in parallel), with the state vectors in cache. It computes exactly what
``seqprob.hmm.inference`` computes on the sequential path -- scaled alphas, per-step
normalizers, smoothing posteriors and expected transition counts (before the final
multiplication by A) -- and is tested against it. No ``(B, T, K, K)`` tensor: each sequence
accumulates a ``(K, K)`` count block.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

from seqprob.kernels.threads import parallel_launch


# reassociation lets the dot products vectorize; no finite-math assumption (-inf is used)
@numba.njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _fused(init, trans, scaled, lengths, alpha, smoothed, log_norm, counts):
    batch, _, k = scaled.shape
    for b in numba.prange(batch):
        n = lengths[b]
        prior = init[b].copy()
        for t in range(n):                                    # forward
            total = 0.0
            for j in range(k):
                v = prior[j] * scaled[b, t, j]
                alpha[b, t, j] = v
                total += v
            log_norm[b, t] = np.log(total) if total > 0 else -np.inf
            inv = 1.0 / total if total > 0 else 0.0
            for j in range(k):
                alpha[b, t, j] *= inv
            prior[:] = 0.0
            for i in range(k):                                # prior = alpha_t @ A
                a = alpha[b, t, i]
                for j in range(k):
                    prior[j] += a * trans[i, j]
        beta = np.ones(k)
        w = np.empty(k)
        nxt = np.empty(k)
        for t in range(n - 1, -1, -1):                        # backward
            mass = 0.0
            for j in range(k):
                mass += alpha[b, t, j] * beta[j]
            inv = 1.0 / mass if mass > 0 else 0.0
            for j in range(k):
                smoothed[b, t, j] = alpha[b, t, j] * beta[j] * inv
            if t == 0:
                break
            for j in range(k):
                w[j] = scaled[b, t, j] * beta[j]
            z = np.exp(log_norm[b, t]) * mass                 # sum_ij alpha A w
            if z > 0:
                for i in range(k):
                    left = alpha[b, t - 1, i] / z
                    for j in range(k):
                        counts[b, i, j] += left * w[j]
            total = 0.0
            for i in range(k):
                acc = 0.0
                for j in range(k):
                    acc += trans[i, j] * w[j]
                nxt[i] = acc
                total += acc
            inv = 1.0 / total if total > 0 else 0.0
            for i in range(k):
                beta[i] = nxt[i] * inv


def forward_backward(init: Tensor, trans: Tensor, scaled: Tensor, lengths: Tensor
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fused recursions on CPU tensors.

    ``init`` (B, K) and ``trans`` (K, K) probabilities, ``scaled`` (B, T, K) emission
    likelihoods up to a per-step factor (exp(loglik - shift), exponentiated by the caller in
    one vectorized pass), ``lengths`` (B,). Returns ``alpha`` (B, T, K) normalized filtering
    distributions, ``log_norm`` (B, T) log p(x_t | x_<t) - shift_t, ``smoothed`` (B, T, K) and
    ``counts`` (K, K) = sum over transitions of alpha_t^T (e_{t+1} beta_{t+1}) / z_t; padding
    is zero.
    """
    if scaled.device.type != "cpu":
        raise ValueError(f"scaled: the fused kernel runs on CPU tensors, got {scaled.device}")
    batch, length, k = scaled.shape
    dtype = scaled.dtype
    args = [t.detach().contiguous().numpy() for t in (init.to(dtype), trans.to(dtype), scaled)]
    alpha = np.zeros((batch, length, k), dtype=args[2].dtype)
    smoothed = np.zeros_like(alpha)
    log_norm = np.zeros((batch, length), dtype=alpha.dtype)
    counts = np.zeros((batch, k, k), dtype=alpha.dtype)
    with parallel_launch(batch):
        _fused(*args, lengths.numpy().astype(np.int64), alpha, smoothed, log_norm, counts)
    return (torch.from_numpy(alpha), torch.from_numpy(log_norm), torch.from_numpy(smoothed),
            torch.from_numpy(counts.sum(0)))

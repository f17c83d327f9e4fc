"""CPU kernels (numba) for the constraint backward table of ``seqprob.control.constrained``.

Both replace a scatter over a large, skewed index whose torch form is dominated by strided or
contended memory access: the emission mass of every token class (most of the vocabulary falls
in two or three classes), and the per-step sum over the DFA's edges. Each reads its input once,
contiguously, with the output row in cache. Tested against the torch forms. Single-threaded:
both loops are memory-bound.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor


@numba.njit(cache=True)
def _class_sums(emission, token_class, out):
    k, v = emission.shape
    for z in range(k):
        for t in range(v):
            out[z, token_class[t]] += emission[z, t]


@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _edge_sums(g, weights, dst, shift, offsets, out):
    q, k = out.shape
    for s in range(q):
        for e in range(offsets[s], offsets[s + 1]):
            c = shift[e]
            if c == 0.0:
                continue
            d = dst[e]
            for z in range(k):
                out[s, z] += weights[e, z] * g[d, z] * c


def class_sums(emission: Tensor, token_class: Tensor, n_classes: int) -> Tensor:
    """``(K, C)``: the emission mass ``emission`` ``(K, V)`` of the tokens of each class,
    ``token_class`` ``(V,)`` int64 in ``[0, n_classes)``."""
    e = emission.detach().contiguous().numpy()
    out = np.zeros((e.shape[0], n_classes), dtype=e.dtype)
    _class_sums(e, token_class.contiguous().numpy(), out)
    return torch.from_numpy(out)


def edge_sums(g: Tensor, weights: Tensor, dst: Tensor, shift: Tensor, offsets: Tensor,
              n_dfa_states: int) -> Tensor:
    """``(Q, K)``: ``out[s] = sum_e weights[e] * g[dst[e]] * shift[e]`` over the edges ``e`` in
    ``[offsets[s], offsets[s + 1])`` (edges sorted by source state); ``g`` ``(Q', K)``,
    ``weights`` ``(E, K)``, ``dst`` and ``shift`` ``(E,)``."""
    out = np.zeros((n_dfa_states, g.shape[1]), dtype=g.numpy().dtype)
    _edge_sums(g.contiguous().numpy(), weights.contiguous().numpy(), dst.numpy(),
                  shift.to(g.dtype).contiguous().numpy(), offsets.numpy(), out)
    return torch.from_numpy(out)

"""Exact HMM inference: pure functions of (log initial, log transition, log-likelihood table).

Shapes: ``log_init`` is ``(K,)`` or ``(B, K)``; ``log_trans`` is ``(K, K)`` with rows
``from -> to``; ``loglik`` is ``(B, T, K)`` = log p(x_t | z_t = k) with 0 at missing
observations; ``lengths`` is ``(B,)`` (``None``: every row has length ``T``). Positions at or
past a row's length are padding and are ignored.

Numerics: probability space with GEMMs. Each step shifts the emission row by its maximum,
exponentiates, multiplies by the transition matrix and renormalizes; the log normalizers add
up to the log-likelihood, so nothing underflows however long the sequence. Expected transition
counts come from one ``(K x N) @ (N x K)`` product times ``A`` -- never a ``(B, T, K, K)``
tensor. For small ``K`` and long ``T`` a blocked parallel-in-time scan (``method="blocked"``)
replaces the ``T`` sequential steps by about ``3 sqrt(T)`` batched ones; ``method="auto"``
picks it with a cost model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from seqprob.core.validation import check_choice, check_shape, check_tensor
from seqprob.hmm.step import condition, predict

METHODS = ("auto", "sequential", "blocked", "fused")
_FUSED_MAX_K = 32  # above this the GEMM formulation wins over the fused scalar kernel
_VITERBI_CHUNK = 2**24  # elements of the (rows, K, K) max-plus temporary per chunk
_PARALLEL_STEP_FLOPS = 2**23  # below this, a step's products run on one thread


@contextlib.contextmanager
def _threads_for(step_flops: int) -> Iterator[None]:
    """Run a loop of small per-step products on one intra-op thread.

    Waking a thread team for a product of a few MFLOP costs more than it saves, and on a
    machine whose cores are busy it costs ~10x the product itself (measured: a 200x64x64 GEMM
    takes 0.16 ms on one thread and 10 ms on two under load). Larger steps keep the caller's
    thread count.
    """
    before = torch.get_num_threads()
    if before == 1 or step_flops >= _PARALLEL_STEP_FLOPS or torch.jit.is_scripting():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _step_flops(batch: int, k: int) -> int:
    return 2 * batch * k * k


class Filtered(NamedTuple):
    """Forward pass. ``filtered``: (B, T, K) p(z_t | x_<=t); ``log_normalizers``: (B, T)
    log p(x_t | x_<t) (0 at padding); ``log_likelihood``: (B,)."""

    filtered: Tensor
    log_normalizers: Tensor
    log_likelihood: Tensor


class Posteriors(NamedTuple):
    """Forward-backward. ``smoothed``: (B, T, K) p(z_t | x), zero rows at padding;
    ``transitions``: (K, K) expected transition counts summed over the batch."""

    log_likelihood: Tensor
    filtered: Tensor
    smoothed: Tensor
    transitions: Tensor


class Decoded(NamedTuple):
    """A state path per row: ``path`` (B, T) long, -1 at padding; ``log_prob`` (B,)
    log p(x, path)."""

    path: Tensor
    log_prob: Tensor


class _Prepared(NamedTuple):
    init: Tensor       # (B, K) initial probabilities
    trans: Tensor      # (K, K) transition probabilities
    scaled: Tensor     # (B, T, K) exp(loglik - shift), ones at padding (loglik before _rescale)
    shift: Tensor | None  # (B, T) per-step max of loglik, 0 at padding (None before _rescale)
    mask: Tensor       # (B, T) bool, True inside each row's length
    lengths: Tensor    # (B,) long
    matmul_dtype: torch.dtype | None  # reduced precision for the GEMMs (bf16), or None


def _check_inputs(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
                  lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    dims: dict[str, int] = {}
    check_shape(loglik, "loglik", ("B", "T", "K"), dims)
    check_shape(log_trans, "log_trans", ("K", "K"), dims)
    check_tensor(log_init, "log_init")
    if log_init.dim() == 1:
        check_shape(log_init, "log_init", ("K",), dims)
    else:
        check_shape(log_init, "log_init", ("B", "K"), dims)
    batch, length = loglik.shape[:2]
    if length == 0:
        raise ValueError("loglik: expected at least one time step, got shape "
                         f"{tuple(loglik.shape)}")
    if lengths is None:
        lengths = torch.full((batch,), length, dtype=torch.long, device=loglik.device)
    else:
        check_shape(check_tensor(lengths, "lengths"), "lengths", ("B",), dims)
        lengths = lengths.to(device=loglik.device, dtype=torch.long)
        if bool(((lengths < 1) | (lengths > length)).any()):
            raise ValueError(f"lengths: expected entries in [1, {length}], got "
                             f"{lengths.tolist()[:20]}")
    mask = torch.arange(length, device=loglik.device) < lengths[:, None]  # (B T)
    return lengths, mask


def _prepare(log_init: Tensor, log_trans: Tensor, loglik: Tensor, lengths: Tensor | None,
             matmul_dtype: torch.dtype | None = None) -> _Prepared:
    lengths, mask = _check_inputs(log_init, log_trans, loglik, lengths)
    batch, _, k = loglik.shape
    if not bool(mask.all()):
        loglik = loglik.masked_fill(~mask[..., None], 0.0)                 # (B T K)
    init = torch.exp(log_init).to(loglik.dtype).expand(batch, k)            # (B K)
    if matmul_dtype not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"matmul_dtype: expected None, torch.bfloat16 or torch.float16, got "
                         f"{matmul_dtype}")
    prep = _Prepared(init, torch.exp(log_trans).to(loglik.dtype), loglik, None, mask, lengths,
                     matmul_dtype)
    return _rescale(prep)


def _rescale(prep: _Prepared) -> _Prepared:
    """Replace the log-likelihoods in ``prep.scaled`` by exp(loglik - per-step max)."""
    loglik = prep.scaled
    shift = loglik.amax(-1)                                                 # (B T)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    return prep._replace(scaled=torch.exp(loglik - shift[..., None]), shift=shift)


def _normalize(v: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of ``v`` (..., K) divided by their sums (zero rows stay zero); returns the sums."""
    total = v.sum(-1, keepdim=True)
    return v / total.clamp_min(torch.finfo(v.dtype).tiny), total.squeeze(-1)


def _cost_prefers_blocked(batch: int, length: int, k: int) -> bool:
    """Blocked costs ~K times the flops of sequential but ~sqrt(T)/3 times fewer steps."""
    return length >= 256 and batch * k**3 <= 2**18


def _fused_applies(prep: _Prepared) -> bool:
    """The fused CPU kernel: CPU float tensors, full precision, no autograd."""
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (prep.init, prep.trans, prep.scaled))
    return (prep.scaled.device.type == "cpu" and prep.matmul_dtype is None and not needs_grad
            and prep.scaled.dtype in (torch.float32, torch.float64))


def _resolve(method: str, prep: _Prepared, *, smoothing: bool = False) -> str:
    """The algorithm to run; ``fused`` exists for forward-backward (``smoothing``) only."""
    check_choice(method, "method", METHODS)
    if method == "fused":
        if not (smoothing and _fused_applies(prep)):
            raise ValueError("method: 'fused' runs forward_backward on CPU float32/float64 "
                             "tensors without autograd or matmul_dtype (and needs numba)")
        return method
    if prep.matmul_dtype is not None:
        if method == "blocked":
            raise ValueError("method: 'blocked' runs in full precision; matmul_dtype needs "
                             "'sequential' or 'auto'")
        return "sequential"
    if method != "auto":
        return method
    batch, length, k = prep.scaled.shape
    if smoothing and k <= _FUSED_MAX_K and _fused_applies(prep):
        return "fused"
    return "blocked" if _cost_prefers_blocked(batch, length, k) else "sequential"


# --- sequential recursions -------------------------------------------------------------------

def _forward_sequential(init: Tensor, trans: Tensor, scaled: Tensor,
                        mm: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Normalized alphas (B, T, K) and log step normalizers (B, T) (shift excluded).

    Few kernel launches per step (this loop bounds the speed for small K): the normalizers
    are logged once at the end. An impossible step (normalizer 0) leaves zero rows, so the
    log-likelihood becomes -inf, never NaN. ``mm`` (bf16/fp16): the products' precision.
    Differentiable (no in-place writes).
    """
    trans = trans.to(mm or scaled.dtype)
    alphas, norms = [], []
    prior = init                                                            # (B K)
    for t in range(scaled.shape[1]):
        a, norm = condition(prior, scaled[:, t])                            # (B K), (B)
        alphas.append(a)
        norms.append(norm)
        prior = predict(a, trans)                                           # (B K)
    return torch.stack(alphas, 1), torch.log(torch.stack(norms, 1))


def _backward_sequential(trans: Tensor, scaled: Tensor, mm: torch.dtype | None = None) -> Tensor:
    """Betas (B, T, K), each row normalized to sum 1 (the scale cancels in posteriors)."""
    batch, length, k = scaled.shape
    mm = mm or scaled.dtype
    trans_t = trans.T.contiguous().to(mm)
    tiny = torch.finfo(scaled.dtype).tiny
    b = scaled.new_full((batch, k), 1.0 / k)
    betas = [b]
    for t in range(length - 2, -1, -1):
        b = scaled[:, t + 1] * b
        b = b @ trans_t if mm == scaled.dtype else (b.to(mm) @ trans_t).to(scaled.dtype)
        b = b / b.sum(-1, keepdim=True).clamp_min(tiny)
        betas.append(b)
    return torch.stack(betas[::-1], 1)


# --- blocked parallel-in-time recursions ------------------------------------------------------

def _block_size(length: int) -> int:
    return max(1, int(math.sqrt(length / 2)))


def _blocks(scaled: Tensor, size: int) -> Tensor:
    """Steps 1..T-1 padded with ones (no observation) to whole blocks: (B, nb, L, K)."""
    batch, _, k = scaled.shape
    rest = scaled[:, 1:]
    pad = (-rest.shape[1]) % size
    if pad:
        rest = torch.cat([rest, rest.new_ones(batch, pad, k)], dim=1)
    return rest.reshape(batch, -1, size, k)


def _block_products(trans: Tensor, blocks: Tensor) -> Tensor:
    """P_b = prod_t A diag(e_t) over each block, max-normalized: (B, nb, K, K)."""
    prod = trans * blocks[:, :, 0, None, :]                                  # (B nb K K)
    for i in range(1, blocks.shape[2]):
        prod = (prod @ trans) * blocks[:, :, i, None, :]
        prod = prod / prod.amax((-2, -1), keepdim=True).clamp_min(torch.finfo(prod.dtype).tiny)
    return prod


def _forward_blocked(init: Tensor, trans: Tensor, scaled: Tensor, blocks: Tensor,
                     prods: Tensor) -> tuple[Tensor, Tensor]:
    batch, length, k = scaled.shape
    n_blocks, size = blocks.shape[1], blocks.shape[2]
    a0, c0 = condition(init, scaled[:, 0])                                   # (B K)
    starts = [a0]
    for j in range(n_blocks - 1):                                           # block boundaries
        starts.append(_normalize((starts[-1][:, None, :] @ prods[:, j]).squeeze(1))[0])
    a = torch.stack(starts, dim=1)                                          # (B nb K)
    alphas, log_cs = [], []
    for i in range(size):                                                   # inside blocks
        a, c = condition(predict(a, trans), blocks[:, :, i])
        alphas.append(a)
        log_cs.append(torch.log(c))
    alpha = torch.stack(alphas, dim=2).reshape(batch, -1, k)[:, : length - 1]
    log_c = torch.stack(log_cs, dim=2).reshape(batch, -1)[:, : length - 1]
    return (torch.cat([a0[:, None], alpha], 1), torch.cat([torch.log(c0)[:, None], log_c], 1))


def _backward_blocked(trans: Tensor, scaled: Tensor, blocks: Tensor, prods: Tensor) -> Tensor:
    batch, length, k = scaled.shape
    n_blocks, size = blocks.shape[1], blocks.shape[2]
    ends = [scaled.new_full((batch, k), 1.0 / k)]                           # beta at block ends
    for j in range(n_blocks - 1, 0, -1):
        ends.append(_normalize((prods[:, j] @ ends[-1][..., None]).squeeze(-1))[0])
    b = torch.stack(ends[::-1], dim=1)                                      # (B nb K)
    betas = [b]
    for i in range(size - 1, 0, -1):
        b, _ = _normalize((blocks[:, :, i] * b) @ trans.T)
        betas.append(b)
    first = _normalize((blocks[:, 0, 0] * betas[-1][:, 0]) @ trans.T)[0]    # beta_0
    beta = torch.stack(betas[::-1], dim=2).reshape(batch, -1, k)[:, : length - 1]
    return torch.cat([first[:, None], beta], dim=1)


def _forward(prep: _Prepared, method: str) -> tuple[Tensor, Tensor]:
    batch, _, k = prep.scaled.shape
    with _threads_for(_step_flops(batch, k)):
        return _forward_any(prep, method)


def _forward_any(prep: _Prepared, method: str) -> tuple[Tensor, Tensor]:
    if _resolve(method, prep) == "sequential" or prep.scaled.shape[1] == 1:
        return _forward_sequential(prep.init, prep.trans, prep.scaled, prep.matmul_dtype)
    blocks = _blocks(prep.scaled, _block_size(prep.scaled.shape[1]))
    return _forward_blocked(prep.init, prep.trans, prep.scaled, blocks,
                            _block_products(prep.trans, blocks))


# --- public functions -------------------------------------------------------------------------

def forward_filter(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
                   lengths: Tensor | None = None, *, method: str = "auto",
                   matmul_dtype: torch.dtype | None = None) -> Filtered:
    """Filtering distributions and the log-likelihood of every row.

    ``matmul_dtype=torch.bfloat16`` runs the products in bf16 (tensor cores; on CUDA, TF32 is
    torch's global ``torch.backends.cuda.matmul.allow_tf32``). Accuracy, tested: log-likelihood
    within 1e-3 relative of fp32 for K=64."""
    return _filter(_prepare(log_init, log_trans, loglik, lengths, matmul_dtype), method)


def _filter(prep: _Prepared, method: str) -> Filtered:
    """:func:`forward_filter` on prepared (checked) inputs."""
    alpha, log_c = _forward(prep, method)
    log_norm = (log_c + prep.shift).masked_fill(~prep.mask, 0.0)            # (B T)
    return Filtered(alpha, log_norm, log_norm.sum(-1))


def forward_backward(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
                     lengths: Tensor | None = None, *, method: str = "auto",
                     matmul_dtype: torch.dtype | None = None) -> Posteriors:
    """Smoothing posteriors and expected transition counts (summed over rows);
    ``matmul_dtype`` as in :func:`forward_filter`."""
    return _posteriors(_prepare(log_init, log_trans, loglik, lengths, matmul_dtype), method)


def _posteriors(prep: _Prepared, method: str) -> Posteriors:
    """:func:`forward_backward` on prepared (checked) inputs."""
    kind = _resolve(method, prep, smoothing=True)
    if kind == "fused":
        return _fused(prep)
    batch, length, k = prep.scaled.shape
    with _threads_for(_step_flops(batch, k)):
        if kind == "sequential" or length == 1:
            alpha, log_c = _forward_sequential(prep.init, prep.trans, prep.scaled,
                                               prep.matmul_dtype)
            beta = _backward_sequential(prep.trans, prep.scaled, prep.matmul_dtype)
        else:
            blocks = _blocks(prep.scaled, _block_size(length))
            prods = _block_products(prep.trans, blocks)
            alpha, log_c = _forward_blocked(prep.init, prep.trans, prep.scaled, blocks, prods)
            beta = _backward_blocked(prep.trans, prep.scaled, blocks, prods)
    log_lik = ((log_c + prep.shift).masked_fill(~prep.mask, 0.0)).sum(-1)  # (B)
    joint, mass = _normalize(alpha * beta)                                  # (B T K), (B T)
    smoothed = joint if bool(prep.mask.all()) else joint * prep.mask[..., None]
    return Posteriors(log_lik, alpha, smoothed,
                      _transition_counts(prep, alpha, beta, log_c, mass))


def _fused(prep: _Prepared) -> Posteriors:
    from seqprob.kernels import hmm_cpu

    alpha, log_c, smoothed, counts = hmm_cpu.forward_backward(prep.init, prep.trans,
                                                              prep.scaled, prep.lengths)
    log_lik = ((log_c + prep.shift).masked_fill(~prep.mask, 0.0)).sum(-1)  # (B)
    return Posteriors(log_lik, alpha, smoothed, prep.trans * counts)


def _transition_counts(prep: _Prepared, alpha: Tensor, beta: Tensor, log_c: Tensor,
                       mass: Tensor) -> Tensor:
    """sum_{b,t} xi_t = A * ((alpha_t / z_t)^T @ (e_{t+1} beta_{t+1})) in one GEMM: (K, K).

    z_t = sum_ij alpha_t(i) A_ij e_{t+1}(j) beta_{t+1}(j) = c_{t+1} * sum_j alpha_{t+1} beta_{t+1}
    (``c`` the forward normalizers, ``mass`` the row sums of alpha * beta): no extra product.
    """
    k = alpha.shape[-1]
    if alpha.shape[1] == 1:
        return alpha.new_zeros(k, k)
    w = prep.scaled[:, 1:] * beta[:, 1:]                                    # (B T-1 K)
    z = torch.exp(log_c[:, 1:]) * mass[:, 1:]                               # (B T-1)
    valid = prep.mask[:, 1:] & (z > 0)
    left = alpha[:, :-1] * torch.where(valid, 1.0 / z.where(valid, 1.0), 0.0)[..., None]
    mm = prep.matmul_dtype or alpha.dtype
    counts = left.reshape(-1, k).T.to(mm) @ w.reshape(-1, k).to(mm)        # (K K)
    return prep.trans * counts.to(alpha.dtype)


def viterbi(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
            lengths: Tensor | None = None) -> Decoded:
    """Most probable state path (max-product in log space), batched in row chunks."""
    lengths, mask = _check_inputs(log_init, log_trans, loglik, lengths)
    batch, _, k = loglik.shape
    log_init = log_init.expand(batch, k)
    rows = max(1, _VITERBI_CHUNK // (k * k))
    with _threads_for(_step_flops(min(rows, batch), k)):
        parts = [_viterbi_rows(log_init[i:i + rows], log_trans, loglik[i:i + rows],
                               lengths[i:i + rows], mask[i:i + rows])
                 for i in range(0, batch, rows)]
    return Decoded(torch.cat([p.path for p in parts]), torch.cat([p.log_prob for p in parts]))


def _viterbi_rows(log_init: Tensor, log_trans: Tensor, loglik: Tensor, lengths: Tensor,
                  mask: Tensor) -> Decoded:
    batch, length, k = loglik.shape
    delta = log_init + loglik[:, 0]                                         # (B K)
    back = torch.zeros(batch, length, k, dtype=torch.long, device=loglik.device)
    for t in range(1, length):
        best, arg = (delta[:, :, None] + log_trans).max(1)                  # (B K)
        back[:, t] = arg
        delta = torch.where(mask[:, t, None], best + loglik[:, t], delta)
    log_prob, state = delta.max(-1)                                         # (B)
    path = torch.full((batch, length), -1, dtype=torch.long, device=loglik.device)
    for t in range(length - 1, -1, -1):
        inside = t < lengths
        path[:, t] = torch.where(inside, state, -1)
        if t > 0:
            prev = back[:, t].gather(1, state[:, None]).squeeze(1)
            state = torch.where(inside, prev, state)
    return Decoded(path, log_prob)


def path_log_prob(log_init: Tensor, log_trans: Tensor, loglik: Tensor, path: Tensor,
                  lengths: Tensor | None = None) -> Tensor:
    """log p(x, z = path) per row: (B,). ``path`` (B, T) long (entries past lengths ignored)."""
    _, mask = _check_inputs(log_init, log_trans, loglik, lengths)
    check_shape(path, "path", tuple(loglik.shape[:2]))
    return _path_log_prob(log_init, log_trans, loglik, path, mask)


def _path_log_prob(log_init: Tensor, log_trans: Tensor, loglik: Tensor, path: Tensor,
                   mask: Tensor) -> Tensor:
    """:func:`path_log_prob` on checked inputs; ``mask`` (B, T) True inside each row."""
    z = path.clamp_min(0)                                                   # (B T)
    emit = loglik.gather(2, z[..., None]).squeeze(-1)                       # (B T)
    step = log_trans[z[:, :-1], z[:, 1:]]                                   # (B T-1)
    first = log_init.expand(loglik.shape[0], -1).gather(1, z[:, :1]).squeeze(1)
    zero = torch.zeros((), dtype=loglik.dtype, device=loglik.device)
    return (first + torch.where(mask, emit, zero).sum(-1)
            + torch.where(mask[:, 1:], step, zero).sum(-1))


def map_decode(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
               lengths: Tensor | None = None, *, method: str = "auto") -> Decoded:
    """Per-position most probable states (argmax of the smoothing posteriors).

    ``log_prob`` is log p(x, path) of the decoded path -- comparable with Viterbi's, and
    ``-inf`` when the pointwise choices form an impossible path.
    """
    prep = _prepare(log_init, log_trans, loglik, lengths)                   # the one check
    path = _posteriors(prep, method).smoothed.argmax(-1).masked_fill(~prep.mask, -1)  # (B T)
    return Decoded(path, _path_log_prob(log_init, log_trans, loglik, path, prep.mask))


def sample_posterior(log_init: Tensor, log_trans: Tensor, loglik: Tensor,
                     lengths: Tensor | None = None, *, generator: torch.Generator | None = None,
                     method: str = "auto") -> Tensor:
    """Forward-filter backward-sample: one path per row from p(z | x): (B, T), -1 at padding."""
    prep = _prepare(log_init, log_trans, loglik, lengths)                   # the one check
    filt, lengths, mask = _filter(prep, method), prep.lengths, prep.mask
    if not bool(torch.isfinite(filt.log_likelihood).all()):
        raise ValueError("loglik: some rows have probability zero under the model; "
                         "their posterior cannot be sampled")
    batch, length, _ = loglik.shape
    trans = torch.exp(log_trans).to(loglik.dtype)
    rows = torch.arange(batch, device=loglik.device)
    state = torch.multinomial(filt.filtered[rows, lengths - 1], 1, generator=generator)[:, 0]
    path = torch.full((batch, length), -1, dtype=torch.long, device=loglik.device)
    for t in range(length - 1, -1, -1):
        path[:, t] = torch.where(t < lengths, state, -1)
        if t > 0:
            weights = filt.filtered[:, t - 1] * trans.T[state]              # (B K)
            drawn = torch.multinomial(_normalize(weights)[0] + (~mask[:, t, None]), 1,
                                      generator=generator)[:, 0]
            state = torch.where(t < lengths, drawn, state)
    return path

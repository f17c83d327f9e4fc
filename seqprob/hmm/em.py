"""Expectation-maximization for :class:`~seqprob.hmm.model.HMM`: full batch, stepwise
(minibatch) and distributed.

The E-step returns :class:`Statistics` (expected counts, additive over data). Summing them
over processes with ``torch.distributed.all_reduce`` is the whole of distributed EM: every
function here calls :func:`all_reduce`, which is the identity when no process group is
initialized, so one process and many run the same code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from seqprob.core.validation import check_float
from seqprob.hmm import inference
from seqprob.hmm.emissions import _log_normalize_rows
from seqprob.hmm.model import HMM

ALL_PARAMS = "stemclw"


@dataclasses.dataclass
class Statistics:
    """Expected sufficient statistics. ``log_likelihood`` () summed over sequences; ``start``
    (K,) expected first states; ``trans`` (K, K) expected transitions; ``emission`` as the
    emission family defines; ``n_sequences`` () the number of sequences."""

    log_likelihood: Tensor
    start: Tensor
    trans: Tensor
    emission: dict[str, Tensor]
    n_sequences: Tensor

    def tensors(self) -> list[Tensor]:
        return [self.log_likelihood, self.start, self.trans, *self.emission.values(),
                self.n_sequences]

    def _rebuild(self, values: list[Tensor]) -> Statistics:
        keys = list(self.emission)
        n = len(keys)
        return Statistics(values[0], values[1], values[2], dict(zip(keys, values[3:3 + n],
                                                                    strict=True)),
                          values[3 + n])

    def __add__(self, other: Statistics) -> Statistics:
        return self._rebuild([a + b for a, b in zip(self.tensors(), other.tensors(),
                                                    strict=True)])

    def scale(self, factor: float) -> Statistics:
        return self._rebuild([t * factor for t in self.tensors()])


@torch.no_grad()
def expected_statistics(model: HMM, x: Tensor, lengths: Tensor | None = None, *,
                        method: str = "auto", reduce: bool = True,
                        matmul_dtype: torch.dtype | None = None,
                        validate: bool = True) -> Statistics:
    """E-step over padded ``x`` (B, T, ...) with ``lengths`` (B,); summed over processes
    when ``reduce`` and a process group is initialized. ``matmul_dtype=torch.bfloat16``:
    reduced-precision products (see :func:`seqprob.hmm.inference.forward_filter`).
    ``validate=False`` skips the input checks for ``x`` already returned by
    ``model.emission.validate`` (an EM loop checks its data once)."""
    x = model.emission.validate(x) if validate else x
    table = model.emission.log_likelihood(x)                                # (B T K)
    post = _posteriors(model, table, lengths, method, matmul_dtype)
    stats = Statistics(
        log_likelihood=post.log_likelihood.sum(),
        start=post.smoothed[:, 0].sum(0),
        trans=post.transitions,
        emission=model.emission.statistics(x, post.smoothed),
        n_sequences=torch.tensor(float(x.shape[0]), dtype=table.dtype, device=table.device),
    )
    return all_reduce(stats) if reduce else stats


def _posteriors(model: HMM, table: Tensor, lengths: Tensor | None, method: str,
                matmul_dtype: torch.dtype | None):
    post = inference.forward_backward(model.log_startprob, model.log_transmat, table, lengths,
                                      method=method, matmul_dtype=matmul_dtype)
    if not bool(torch.isfinite(post.log_likelihood).all()):
        bad = int((~torch.isfinite(post.log_likelihood)).nonzero()[0])
        raise ValueError(f"x: sequence {bad} has probability zero under the current model "
                         "(an observation no state can emit); EM cannot proceed")
    return post


def all_reduce(stats: Statistics) -> Statistics:
    """Sum ``stats`` over all processes of the default group (identity without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stats
    tensors = stats.tensors()
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset:offset + t.numel()].reshape(t.shape))
        offset += t.numel()
    return stats._rebuild(out)


@torch.no_grad()
def maximize(model: HMM, stats: Statistics, params: str = ALL_PARAMS) -> None:
    """M-step in place for the parameters whose letters are in ``params``: ``s`` start,
    ``t`` transitions, and the emission family's letters. Pseudocounts come from the model;
    structural zeros of the transition matrix get none and stay zero; rows without data
    keep their previous values."""
    if "s" in params:
        counts = stats.start + model.start_pseudocount
        model.log_startprob.copy_(_log_normalize_rows(counts[None], model.log_startprob[None])[0])
    if "t" in params:
        allowed = torch.isfinite(model.log_transmat)
        counts = (stats.trans + model.trans_pseudocount) * allowed
        model.log_transmat.copy_(_log_normalize_rows(counts, model.log_transmat))
    model.emission.maximize(stats.emission, params)


def stepwise_update(running: Statistics | None, batch: Statistics, step_size: float
                    ) -> Statistics:
    """Stepwise EM (Cappé & Moulines; Liang & Klein): running <- (1 - eta) running + eta batch,
    with ``batch`` first rescaled to the running statistics' number of sequences."""
    check_float(step_size, "step_size", low=0.0, high=1.0, low_open=True)
    if running is None:
        return batch
    factor = float(running.n_sequences) / max(float(batch.n_sequences), 1.0)
    return running.scale(1.0 - step_size) + batch.scale(step_size * factor)


def step_size(update: int, *, offset: float = 2.0, decay: float = 0.7) -> float:
    """The schedule eta_u = (u + offset) ** -decay, decay in (0.5, 1] (Robbins-Monro)."""
    return float(min(1.0, math.pow(update + offset, -decay)))


@torch.no_grad()
def fit(model: HMM, batches: Iterable[tuple[Tensor, Tensor | None]], *, n_iter: int = 10,
        tol: float = 1e-2, params: str = ALL_PARAMS, method: str = "auto") -> list[float]:
    """Full-batch EM over ``batches`` (a re-iterable of ``(x, lengths)``): statistics are
    summed over the batches (and processes) before every M-step. Returns the log-likelihood
    history; stops when an iteration improves it by less than ``tol``."""
    batches = list(batches)
    history: list[float] = []
    for _ in range(n_iter):
        total = None
        for x, lengths in batches:
            part = expected_statistics(model, x, lengths, method=method, reduce=False)
            total = part if total is None else total + part
        if total is None:
            raise ValueError("batches: expected at least one (x, lengths) pair, got none")
        total = all_reduce(total)
        history.append(float(total.log_likelihood))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
        maximize(model, total, params)
    return history

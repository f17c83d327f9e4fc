"""An HMM as the probability tables that tractable control reads, and its forward step.

Control needs only three tables of an HMM, exponentiated once: initial ``(K,)``, transition
``(K, K)`` and emission ``(K, V)``. Any HMM (``seqprob.hmm`` or another source) enters through
its log-parameters with :func:`hmm_tables`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from seqprob.core.validation import check_choice, check_dtype, check_shape, check_tensor


@dataclasses.dataclass(frozen=True, eq=False)
class HMMTables:
    """An HMM's probabilities: ``initial`` ``(K,)``, ``transition`` ``(K, K)`` (rows: from),
    ``emission`` ``(K, V)``; built from log-parameters by :func:`hmm_tables`."""

    initial: Tensor
    transition: Tensor
    emission: Tensor

    @property
    def n_states(self) -> int:
        return self.initial.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.emission.shape[1]


def hmm_tables(log_initial: Tensor, log_transition: Tensor, log_emission: Tensor, *,
               dtype: torch.dtype | None = None) -> HMMTables:
    """Check and exponentiate an HMM's log-parameters (``-inf`` marks a structural zero) in
    ``dtype`` (default: theirs); the exponentiated emission matrix is computed here once and
    reused at every decoding step."""
    dims: dict[str, int] = {}
    for name, x, spec in (("log_initial", log_initial, ("K",)),
                          ("log_transition", log_transition, ("K", "K")),
                          ("log_emission", log_emission, ("K", "V"))):
        check_shape(check_dtype(check_tensor(x, name), name, (torch.float32, torch.float64)),
                    name, spec, dims)
        if bool(torch.isnan(x).any()) or bool((x == float("inf")).any()):
            raise ValueError(f"{name}: expected log-probabilities (finite or -inf), got NaN or "
                             "+inf entries")
        sums = torch.logsumexp(x.double(), dim=-1).exp()
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            worst = float((sums - 1).abs().max())
            raise ValueError(f"{name}: expected rows that are distributions (sum 1 after exp), "
                             f"got a row sum off by {worst:.3g}")
    dtype = log_emission.dtype if dtype is None else dtype
    return HMMTables(log_initial.to(dtype).exp(), log_transition.to(dtype).exp(),
                     log_emission.to(dtype).exp())


def hmm_predict(hmm: HMMTables, prior: Tensor, tokens: Tensor) -> Tensor:
    """One forward step: the distribution of the next hidden state ``(batch, K)`` after the
    hidden state with distribution ``prior`` ``(batch, K)`` emitted ``tokens`` ``(batch,)``.
    A token the HMM deems impossible under ``prior`` carries no information and leaves the
    prior unconditioned."""
    posterior = prior * hmm.emission[:, tokens].T  # (batch, K)
    total = posterior.sum(-1, keepdim=True)
    posterior = torch.where(total > 0, posterior / total.clamp(min=torch.finfo(total.dtype).tiny),
                            prior)
    return posterior @ hmm.transition


def emission_for_matmul(hmm: HMMTables, dtype: torch.dtype | None) -> Tensor:
    """The emission matrix ``(K, V)`` in ``dtype`` for the per-step product over the
    vocabulary (``None``: as it is; ``torch.bfloat16`` halves the memory read each step)."""
    if dtype is None:
        return hmm.emission
    check_choice(dtype, "matmul_dtype", (torch.float32, torch.float64, torch.bfloat16))
    return hmm.emission.to(dtype)

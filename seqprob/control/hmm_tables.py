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
from seqprob.hmm.step import condition, predict


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
    """One forward step (:func:`seqprob.hmm.step.condition` then ``predict``): the
    distribution of the next hidden state ``(batch, K)`` after the hidden state with
    distribution ``prior`` ``(batch, K)`` emitted ``tokens`` ``(batch,)``. A token
    the HMM deems impossible under ``prior`` carries no information and leaves the prior
    unconditioned."""
    posterior, total = condition(prior, hmm.emission[:, tokens].T)  # (batch, K), (batch,)
    return predict(torch.where(total[:, None] > 0, posterior, prior), hmm.transition)


def prompt_prior(hmm: HMMTables, prompt_ids: Tensor) -> Tensor:
    """``(batch, K)``: the distribution of the hidden state that emits the first new token,
    after the HMM has read each row of ``prompt_ids`` ``(batch, L)`` (int64; left padding is
    ``-1`` and skipped) -- the forward filter over the prompt, then one ``predict``."""
    check_shape(check_tensor(prompt_ids, "prompt_ids"), "prompt_ids", (None, None))
    if prompt_ids.dtype.is_floating_point or prompt_ids.dtype == torch.bool:
        raise TypeError(f"prompt_ids: expected integer token ids, got dtype {prompt_ids.dtype}")
    ids = prompt_ids.to(hmm.emission.device)
    if ids.numel() and (int(ids.min()) < -1 or int(ids.max()) >= hmm.vocab_size):
        raise ValueError(f"prompt_ids: expected ids in [0, {hmm.vocab_size}) or -1 (left "
                         f"padding), got ids in [{int(ids.min())}, {int(ids.max())}]")
    prior = hmm.initial.expand(ids.shape[0], -1)                          # (batch, K)
    for t in range(ids.shape[1]):
        real = ids[:, t] >= 0                                              # (batch,)
        if bool(real.any()):
            nxt = hmm_predict(hmm, prior, ids[:, t].clamp(min=0))
            prior = torch.where(real[:, None], nxt, prior)
    return prior.clone()


def emission_for_matmul(hmm: HMMTables, dtype: torch.dtype | None) -> Tensor:
    """The emission matrix ``(K, V)`` in ``dtype`` for the per-step product over the
    vocabulary (``None``: as it is; ``torch.bfloat16`` halves the memory read each step)."""
    if dtype is None:
        return hmm.emission
    check_choice(dtype, "matmul_dtype", (torch.float32, torch.float64, torch.bfloat16))
    return hmm.emission.to(dtype)

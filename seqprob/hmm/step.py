"""The HMM filter step, ``predict`` then ``condition``, in probability space, with a log-space
reference twin.

Every forward recursion of the package is these two operations: the sequential and blocked
filters (``seqprob.hmm.inference``), ``HMM.step`` and the control processors
(``seqprob.control``). Shapes: a distribution over the hidden states is ``(..., K)``, the
transition matrix ``(K, K)`` has rows ``from -> to``.

``predict``: p(z_{t+1} | x_<=t) = p(z_t | x_<=t) @ A.
``condition``: p(z_t | x_<=t) ∝ p(z_t | x_<t) · p(x_t | z_t); the normalizer
p(x_t | x_<t) comes back beside it. The likelihood row may be scaled by any positive constant
(the caller keeps the scale), and a row whose normalizer is 0 (the observation is impossible)
stays a zero row, so a log-likelihood built from the normalizers is ``-inf``, never NaN.

The probability-space pair makes no log/exp round trip: callers hold filters as probabilities
and take logs once, where they report log-likelihoods. ``predict_log``/``condition_log`` are
the same maps in log space (``logsumexp``), slower and kept as the oracle of the tests.
"""

from __future__ import annotations

import torch
from torch import Tensor


def predict(filtered: Tensor, transition: Tensor) -> Tensor:
    """``filtered`` ``(..., K)`` -> the next hidden state's distribution ``(..., K)``, in
    ``transition``'s dtype (a bf16 ``transition`` runs the product in bf16)."""
    return filtered.to(transition.dtype) @ transition


def condition(prior: Tensor, likelihood: Tensor) -> tuple[Tensor, Tensor]:
    """``prior`` ``(..., K)`` times ``likelihood`` ``(..., K)`` (p(x | z), up to a positive
    factor), renormalized: ``(posterior (..., K), normalizer (...))`` with normalizer
    ``sum_z prior(z) likelihood(z)``; a zero normalizer leaves a zero row."""
    joint = prior * likelihood
    total = joint.sum(-1, keepdim=True)
    return joint / total.clamp_min(torch.finfo(total.dtype).tiny), total.squeeze(-1)


def predict_log(log_filtered: Tensor, log_transition: Tensor) -> Tensor:
    """Reference twin of :func:`predict` in log space: ``(..., K)`` log-probabilities."""
    return torch.logsumexp(log_filtered[..., :, None] + log_transition, dim=-2)


def condition_log(log_prior: Tensor, log_likelihood: Tensor) -> tuple[Tensor, Tensor]:
    """Reference twin of :func:`condition` in log space: ``(log posterior, log normalizer)``;
    an impossible observation gives a ``-inf`` row and normalizer."""
    joint = log_prior + log_likelihood
    log_norm = torch.logsumexp(joint, dim=-1)
    safe = torch.where(torch.isfinite(log_norm), log_norm, torch.zeros_like(log_norm))
    return joint - safe[..., None], log_norm

"""The ``HMM`` module: log-space parameters plus one emission family, as a SequenceModel."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from seqprob.core.contract import SequenceModel, State
from seqprob.core.persist import Persistable, register
from seqprob.core.validation import check_choice, check_float, check_int, check_shape
from seqprob.hmm import inference
from seqprob.hmm.emissions import (
    CategoricalEmission,
    Emission,
    GaussianEmission,
    GaussianMixtureEmission,
    MultinomialEmission,
    PoissonEmission,
)
from seqprob.hmm.step import condition, predict

EMISSIONS = ("categorical", "gaussian", "poisson", "gmm", "multinomial")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclasses.dataclass
class HMMState(State):
    """``filter`` (B, K): p(z_t | x_<=t) after the last consumed position (the start
    distribution before any), in probability space; ``log_likelihood`` (B,): log p(x_<=t);
    ``position``: positions consumed so far."""

    filter: Tensor
    log_likelihood: Tensor
    position: int = 0


def _check_stochastic(probs: Tensor, name: str) -> Tensor:
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError(f"{name}: expected finite non-negative probabilities")
    sums = probs.sum(-1, keepdim=True)
    if not bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5, rtol=0)):
        raise ValueError(f"{name}: expected rows summing to 1, got sums "
                         f"{sums.flatten()[:8].tolist()}")
    return probs / sums  # exact normalization of rows within the tolerance


@register
class HMM(SequenceModel, Persistable):
    """A hidden Markov model with ``n_states`` states and one emission family.

    ``forward(x)`` returns the per-position log filtering distribution ``(B, T, K)`` and an
    :class:`HMMState`; ``x`` is ``(B, T)`` token ids (categorical) or ``(B, T, D)`` floats.
    Structural zeros of the transition matrix (log-probability ``-inf``) stay zero under EM.
    """

    def __init__(self, n_states: int, emission: str = "categorical", *,
                 n_symbols: int | None = None, n_features: int | None = None,
                 covariance_type: str = "diag", start_pseudocount: float = 0.0,
                 trans_pseudocount: float = 0.0, emission_options: dict[str, Any] | None = None,
                 dtype: str = "float32"):
        super().__init__()
        self.n_states = k = check_int(n_states, "n_states", minimum=1)
        self.emission_kind = check_choice(emission, "emission", EMISSIONS)
        self.start_pseudocount = check_float(start_pseudocount, "start_pseudocount", low=0.0)
        self.trans_pseudocount = check_float(trans_pseudocount, "trans_pseudocount", low=0.0)
        self.emission_options = dict(emission_options or {})
        self.dtype_name = check_choice(dtype, "dtype", tuple(_DTYPES))
        self._config = {"n_states": k, "emission": emission, "n_symbols": n_symbols,
                        "n_features": n_features, "covariance_type": covariance_type,
                        "start_pseudocount": start_pseudocount,
                        "trans_pseudocount": trans_pseudocount,
                        "emission_options": self.emission_options, "dtype": dtype}
        self.log_startprob = nn.Parameter(torch.full((k,), -math.log(k)))   # (K)
        self.log_transmat = nn.Parameter(torch.full((k, k), -math.log(k)))  # (K K)
        self.emission = self._make_emission(n_symbols, n_features, covariance_type)
        self.to(_DTYPES[dtype])

    def _make_emission(self, n_symbols, n_features, covariance_type) -> Emission:
        k, opts = self.n_states, self.emission_options
        if self.emission_kind == "categorical":
            if n_symbols is None:
                raise ValueError("n_symbols: required for categorical emissions, got None")
            return CategoricalEmission(k, n_symbols, **opts)
        if n_features is None:
            raise ValueError(f"n_features: required for {self.emission_kind} emissions, "
                             "got None")
        if self.emission_kind in ("gaussian", "gmm"):
            family = GaussianEmission if self.emission_kind == "gaussian" else \
                GaussianMixtureEmission
            return family(k, n_features, covariance_type=covariance_type, **opts)
        family = PoissonEmission if self.emission_kind == "poisson" else MultinomialEmission
        return family(k, n_features, **opts)

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    # --- parameters in probability space --------------------------------------------------
    @torch.no_grad()
    def set_probabilities(self, startprob: Tensor | None = None,
                          transmat: Tensor | None = None) -> None:
        """Set start/transition probabilities (rows must sum to 1; zeros become -inf)."""
        k = self.n_states
        if startprob is not None:
            startprob = torch.as_tensor(startprob, dtype=self.log_startprob.dtype)
            check_shape(startprob, "startprob", (k,))
            self.log_startprob.copy_(torch.log(_check_stochastic(startprob, "startprob")))
        if transmat is not None:
            transmat = torch.as_tensor(transmat, dtype=self.log_transmat.dtype)
            check_shape(transmat, "transmat", (k, k))
            self.log_transmat.copy_(torch.log(_check_stochastic(transmat, "transmat")))

    # --- sequence-model contract ----------------------------------------------------------
    def init_state(self, batch_size: int, *, device=None, dtype=None) -> HMMState:
        dtype = dtype if dtype is not None and dtype.is_floating_point else \
            self.log_startprob.dtype
        device = device if device is not None else self.log_startprob.device
        start = torch.exp(self.log_startprob.detach()).to(device, dtype)
        return HMMState(start.expand(batch_size, -1).clone(),
                        torch.zeros(batch_size, device=device, dtype=dtype), 0)

    def transition_probabilities(self) -> Tensor:
        """``(K, K)`` exp(log_transmat), computed once per parameter update (recomputed, not
        cached, while autograd tracks the parameters)."""
        log_trans = self.log_transmat
        if torch.is_grad_enabled() and log_trans.requires_grad:
            return torch.exp(log_trans)
        key = (log_trans._version, log_trans.data_ptr(), log_trans.dtype, log_trans.device)
        if getattr(self, "_trans_key", None) != key:
            self._trans_cache, self._trans_key = torch.exp(log_trans.detach()), key
        return self._trans_cache

    def _prior(self, state: HMMState) -> Tensor:
        """p(z_next | x_seen): (B, K); the start distribution before any observation."""
        if state.position == 0:  # from the parameter itself, so gradients reach it
            return torch.exp(self.log_startprob).to(state.filter).expand_as(state.filter)
        return predict(state.filter, self.transition_probabilities().to(state.filter))

    def forward(self, x: Tensor, state: HMMState | None = None) -> tuple[Tensor, HMMState]:
        x = self.emission.validate(x)
        state = state if state is not None else self.init_state(x.shape[0], device=x.device)
        loglik = self.emission.log_likelihood(x)                            # (B T K)
        filt = inference.forward_filter(torch.log(self._prior(state)), self.log_transmat,
                                        loglik)
        new = HMMState(filt.filtered[:, -1], state.log_likelihood + filt.log_likelihood,
                       state.position + x.shape[1])
        return torch.log(filt.filtered), new

    def step(self, x_t: Tensor, state: HMMState) -> tuple[Tensor, HMMState]:
        """One observation ``x_t`` ``(B,)`` or ``(B, D)``: ``predict`` from the state's filter,
        ``condition`` on the emission (:mod:`seqprob.hmm.step`); returns the log filter
        ``(B, K)`` and the new state."""
        loglik = self.emission.log_likelihood(self.emission.validate(x_t[:, None]))[:, 0]
        shift = loglik.amax(-1, keepdim=True)                               # (B 1)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        filtered, norm = condition(self._prior(state), torch.exp(loglik - shift))
        log_likelihood = state.log_likelihood + torch.log(norm) + shift[:, 0]
        return torch.log(filtered), HMMState(filtered, log_likelihood, state.position + 1)

    # --- whole-sequence inference ---------------------------------------------------------
    def log_likelihood_table(self, x: Tensor) -> Tensor:
        """Validated observations -> (B, T, K) emission log-likelihoods."""
        return self.emission.log_likelihood(self.emission.validate(x))

    def posteriors(self, x: Tensor, lengths: Tensor | None = None, *, method: str = "auto",
                   matmul_dtype: torch.dtype | None = None) -> inference.Posteriors:
        """Forward-backward over padded ``x`` with per-row ``lengths``."""
        return inference.forward_backward(self.log_startprob, self.log_transmat,
                                          self.log_likelihood_table(x), lengths, method=method,
                                          matmul_dtype=matmul_dtype)

    def decode(self, x: Tensor, lengths: Tensor | None = None, *,
               algorithm: str = "viterbi") -> inference.Decoded:
        """Viterbi (``"viterbi"``) or pointwise posterior argmax (``"map"``) paths."""
        check_choice(algorithm, "algorithm", ("viterbi", "map"))
        table = self.log_likelihood_table(x)
        fn = inference.viterbi if algorithm == "viterbi" else inference.map_decode
        return fn(self.log_startprob, self.log_transmat, table, lengths)

    @torch.no_grad()
    def sample(self, n_steps: int, batch_size: int = 1, *,
               generator: torch.Generator | None = None, first_state: int | None = None
               ) -> tuple[Tensor, Tensor]:
        """Draw ``(observations (B, T, ...), states (B, T))`` from the model; ``first_state``
        fixes the first hidden state instead of drawing it from the start distribution."""
        check_int(n_steps, "n_steps", minimum=1)
        check_int(batch_size, "batch_size", minimum=1)
        start = torch.exp(self.log_startprob.detach())
        if first_state is not None:
            check_int(first_state, "first_state", minimum=0, maximum=self.n_states - 1)
            start = torch.nn.functional.one_hot(torch.tensor(first_state), self.n_states)
            start = start.to(self.log_startprob.dtype)
        trans = torch.exp(self.log_transmat.detach())
        z = torch.multinomial(start.expand(batch_size, -1), 1, generator=generator)[:, 0]
        states = [z]
        for _ in range(n_steps - 1):
            z = torch.multinomial(trans[z], 1, generator=generator)[:, 0]
            states.append(z)
        path = torch.stack(states, dim=1)                                   # (B T)
        obs = self.emission.sample(path.reshape(-1), generator)
        return obs.reshape(batch_size, n_steps, *obs.shape[1:]), path

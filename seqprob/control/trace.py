"""TRACE: attribute control by the exact expected attribute probability under an HMM.

An attribute classifier that factorizes over tokens, p(a | x) = exp(sum_i w(x_i)) with
``w <= 0`` (:class:`TokenAttribute`), makes the expected attribute probability over the HMM's
futures tractable. With ``n`` tokens left to generate (this one included), ``gamma`` ``(K,)``
the HMM's distribution of the hidden state that emits the next token, and ``B`` the emission
matrix ``(K, V)``,

    EAP(x_<t, v) = exp(w(x_<t) + w(v)) · sum_z gamma(z) B[z, v] G_{n-1}(z) / sum_z gamma(z) B[z, v],

where ``G_r(z) = E[exp(sum of w over the next r tokens) | z emitted the last token]`` comes from
one backward pass per attribute: ``G_0 = 1``, ``G_r = A (m ⊙ G_{r-1})`` with
``m = B exp(w)`` ``(K,)`` — a new attribute costs one ``(K, V)`` matrix-vector product and
``r`` ``(K, K)`` ones. Decoding draws from p_LM(v | x_<t) · EAP(x_<t, v)^strength
(:class:`AttributeProcessor`, ``rule="power"``) or, as TRACE publishes it (the default,
``rule="trace"``), from p_LM(v | x_<t) · sigmoid(strength · logit(EAP(x_<t, v))): the strength
scales the log-odds, so tokens with EAP near 1 are left alone at any strength and tokens with a
small EAP are pushed down steeply. The HMM's futures have a fixed length (the remaining
budget).

Fitting ``w`` (:func:`fit_attribute`): with teacher scores ``s(x)`` in (0, 1] of texts,
``-log s(x) ≈ sum_v count_v(x) u_v`` with ``u = -w >= 0`` is a linear regression on token
counts with non-negative coefficients; an L1 penalty keeps ``u`` sparse, so tokens the teacher
does not care about keep ``w = 0``. This is scikit-learn's ``Lasso(positive=True,
fit_intercept=False)`` on the sparse count matrix. TRACE first sharpens the teacher's scores,
``s' = sigmoid(b (logit(s) - c))`` (its defaults for toxicity: b = 10, c = 3), a soft
threshold at ``s = sigmoid(c)``: texts below it get targets near 0, so their tokens take the
weight (``fit_attribute(..., target_transform=(b, c))``). Teachers that run offline:
:func:`nontoxic_teacher` (``alt-profanity-check``) and :func:`positive_teacher` (VADER).
Composite attributes multiply: ``a * b`` has weights ``w_a + w_b``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqprob.control.hmm_tables import HMMTables, emission_for_matmul, hmm_predict, prompt_prior
from seqprob.core import State
from seqprob.core.validation import (
    check_choice,
    check_float,
    check_int,
    check_shape,
    check_tensor,
    describe,
)
from seqprob.lm.processors import LogitsProcessor

RULES = ("trace", "power")  # sigmoid(strength * logit(EAP)), or EAP ** strength


@dataclasses.dataclass(frozen=True, eq=False)
class TokenAttribute:
    """p(a | x) = exp(sum_i weights[x_i]); ``weights`` ``(V,)``, every entry ``<= 0``."""

    weights: Tensor
    name: str = "attribute"

    def __post_init__(self) -> None:
        check_shape(check_tensor(self.weights, "weights"), "weights", (None,))
        if not bool(torch.isfinite(self.weights).all()) or bool((self.weights > 0).any()):
            raise ValueError("weights: expected finite entries <= 0 (so p(a | x) <= 1), got "
                             f"entries in [{float(self.weights.min())}, "
                             f"{float(self.weights.max())}]")

    @property
    def vocab_size(self) -> int:
        return self.weights.shape[0]

    def log_prob(self, token_ids: Sequence[int]) -> float:
        """log p(a | x) of one token sequence."""
        return float(self.weights[torch.as_tensor(list(token_ids), dtype=torch.int64)].sum())

    def __mul__(self, other: TokenAttribute) -> TokenAttribute:
        if not isinstance(other, TokenAttribute) or other.vocab_size != self.vocab_size:
            raise ValueError(f"other: expected a TokenAttribute over {self.vocab_size} tokens, "
                             f"got {describe(other)}")
        return TokenAttribute(self.weights + other.weights, f"{self.name}*{other.name}")


def fit_attribute(token_ids: Sequence[Sequence[int]], scores: Any, vocab_size: int, *,
                  alpha: float = 1e-4, min_score: float = 1e-4, name: str = "attribute",
                  max_iter: int = 5000,
                  target_transform: tuple[float, float] | None = None) -> TokenAttribute:
    """Fit ``w <= 0`` so that ``exp(sum_i w(x_i))`` matches teacher ``scores`` in [0, 1] of
    the token sequences (see the module docstring); ``alpha`` is the L1 strength (per sample,
    scikit-learn's convention), scores are clipped below at ``min_score``.
    ``target_transform=(b, c)``: fit to TRACE's ``sigmoid(b (logit(s) - c))`` instead of
    ``s``."""
    from scipy import sparse
    from sklearn.linear_model import Lasso

    check_int(vocab_size, "vocab_size", minimum=1)
    check_float(alpha, "alpha", low=0.0, low_open=True)
    check_float(min_score, "min_score", low=0.0, high=1.0, low_open=True)
    y = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != len(token_ids) or y.size == 0:
        raise ValueError(f"scores: expected one score per sequence ({len(token_ids)}), got "
                         f"{describe(y)}")
    if not np.all((y >= 0) & (y <= 1)):
        raise ValueError(f"scores: expected probabilities in [0, 1], got values in "
                         f"[{y.min()}, {y.max()}]")
    lengths = np.array([len(s) for s in token_ids])
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in token_ids]) if lengths.sum() \
        else np.zeros(0, dtype=np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= vocab_size):
        raise ValueError(f"token_ids: expected ids in [0, {vocab_size}), got ids in "
                         f"[{cols.min()}, {cols.max()}]")
    if target_transform is not None:
        y = sharpen(y, *target_transform)
    rows = np.repeat(np.arange(len(token_ids)), lengths)
    counts = sparse.csr_matrix((np.ones(cols.size), (rows, cols)),
                               shape=(len(token_ids), vocab_size))  # (N, V)
    target = -np.log(np.clip(y, min_score, 1.0))
    model = Lasso(alpha=alpha, positive=True, fit_intercept=False, max_iter=max_iter)
    model.fit(counts, target)
    return TokenAttribute(torch.from_numpy(-model.coef_).to(torch.float32).clamp(max=0.0), name)


def sharpen(scores: np.ndarray, b: float, c: float) -> np.ndarray:
    """TRACE's target transform ``sigmoid(b (logit(s) - c))`` of scores in [0, 1]
    (``b > 0``; 0 and 1 stay 0 and 1)."""
    check_float(b, "target_transform[0] (b)", low=0.0, low_open=True)
    check_float(c, "target_transform[1] (c)")
    with np.errstate(divide="ignore"):
        logit = np.log(scores) - np.log1p(-scores)
    return 1.0 / (1.0 + np.exp(-b * (logit - c)))


def nontoxic_teacher(texts: Sequence[str]) -> np.ndarray:
    """P(not offensive) of each text by ``alt-profanity-check`` (offline, linear SVM)."""
    try:
        from profanity_check import predict_prob
    except ImportError as err:
        raise ImportError("nontoxic_teacher needs alt-profanity-check: "
                          "pip install 'seqprob[control]'") from err
    return 1.0 - np.asarray(predict_prob(list(texts)), dtype=np.float64)


def positive_teacher(texts: Sequence[str]) -> np.ndarray:
    """P(positive sentiment) of each text: VADER's compound score mapped from [-1, 1]."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as err:
        raise ImportError("positive_teacher needs vaderSentiment: "
                          "pip install 'seqprob[control]'") from err
    analyzer = SentimentIntensityAnalyzer()
    return np.array([(analyzer.polarity_scores(t)["compound"] + 1) / 2 for t in texts])


def fit_from_texts(texts: Sequence[str], tokenizer: Any,
                   teacher: Callable[[Sequence[str]], np.ndarray], *,
                   vocab_size: int | None = None, name: str = "attribute",
                   lexicon: bool = False, alpha: float = 1e-4,
                   **fit_kwargs: Any) -> TokenAttribute:
    """Score ``texts`` with ``teacher``, tokenize them (Hugging Face tokenizer, no special
    tokens) and fit a :class:`TokenAttribute` (``alpha`` and ``fit_kwargs``: see
    :func:`fit_attribute`).

    ``lexicon``: also score the text of every vocabulary token alone
    (:func:`vocabulary_texts`) and fit on both, with ``alpha`` scaled so that the L1 threshold
    stays that of ``texts`` alone (scikit-learn's alpha is per sample): a token-level lexicon
    from the teacher, which a few hundred sampled texts cannot give (words that never occur in
    them get no weight)."""
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"texts: expected a non-empty list of strings, got {describe(texts)}")
    corpus = texts + vocabulary_texts(tokenizer) if lexicon else texts
    ids = [tokenizer.encode(t, add_special_tokens=False) for t in corpus]
    vocab = len(tokenizer) if vocab_size is None else vocab_size
    return fit_attribute(ids, teacher(corpus), vocab, name=name,
                         alpha=alpha * len(texts) / len(corpus), **fit_kwargs)


def vocabulary_texts(tokenizer: Any) -> list[str]:
    """The decoded text of every token of ``tokenizer`` except special and blank ones."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    texts = (tokenizer.decode([i]) for i in range(len(tokenizer)) if i not in special)
    return [t for t in texts if t.strip()]


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeTable:
    """``G_r`` for ``r`` in ``[0, R)``: ``values`` ``(R, K)`` scaled to a maximum of 1,
    ``log_scale`` ``(R,)``."""

    values: Tensor
    log_scale: Tensor


def attribute_table(hmm: HMMTables, attribute: TokenAttribute, max_tokens: int
                    ) -> AttributeTable:
    """The backward pass of the module docstring for futures of up to ``max_tokens - 1``."""
    check_int(max_tokens, "max_tokens", minimum=1)
    _check_vocab(hmm, attribute)
    m = hmm.emission @ attribute.weights.to(hmm.emission).exp()  # (K,)
    g = torch.ones_like(m)
    values, scales, log_scale = [g], [0.0], 0.0
    for _ in range(max_tokens - 1):
        g = hmm.transition @ (m * g)  # (K,)
        peak = g.max()
        g = g / peak
        log_scale += float(peak.log())
        values.append(g)
        scales.append(log_scale)
    return AttributeTable(torch.stack(values), torch.tensor(scales, dtype=m.dtype))


def _check_vocab(hmm: HMMTables, attribute: TokenAttribute) -> None:
    if not isinstance(hmm, HMMTables):
        raise TypeError(f"hmm: expected HMMTables (see hmm_tables), got {describe(hmm)}")
    if not isinstance(attribute, TokenAttribute):
        raise TypeError(f"attribute: expected a TokenAttribute, got {describe(attribute)}")
    if hmm.vocab_size != attribute.vocab_size:
        raise ValueError(f"hmm: expected an emission matrix over the attribute's vocabulary of "
                         f"{attribute.vocab_size} tokens, got {hmm.vocab_size}")


@dataclasses.dataclass
class AttributeState(State):
    """Per row: ``prior`` ``(batch, K)`` (the HMM's distribution of the hidden state that
    emits the next token), ``log_prefix`` ``(batch,)`` (sum of ``w`` over the tokens so far),
    ``step`` ``(batch,)``; ``max_new_tokens`` is the budget."""

    prior: Tensor
    log_prefix: Tensor
    step: Tensor
    max_new_tokens: int


class AttributeProcessor(LogitsProcessor):
    """p(x_t | x_<t, a) ∝ p_LM(x_t | x_<t) · sigmoid(strength · logit(EAP(x_<=t))) (TRACE,
    ``rule="trace"``) or · EAP(x_<=t)^strength (``rule="power"``; the two agree at strength 1)
    for a token-factorized attribute (or a product of several); the backward table is built
    here for
    ``max_new_tokens`` tokens, once. ``matmul_dtype``: as in
    :class:`~seqprob.control.constrained.ConstraintProcessor`. The HMM reads each row's prompt
    first (:func:`~seqprob.control.hmm_tables.prompt_prior`); the attribute scores the new
    tokens only."""

    def __init__(self, hmm: HMMTables, attribute: TokenAttribute, *, max_new_tokens: int,
                 strength: float = 1.0, rule: str = "trace",
                 matmul_dtype: torch.dtype | None = None) -> None:
        _check_vocab(hmm, attribute)
        self.hmm = hmm
        self.attribute = attribute
        self.strength = check_float(strength, "strength", low=0.0)
        self.rule = check_choice(rule, "rule", RULES)
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        self.table = attribute_table(hmm, attribute, max_new_tokens)
        self._weights = attribute.weights.to(hmm.emission)
        self._emission_mm = emission_for_matmul(hmm, matmul_dtype)  # (K, V)

    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> AttributeState:
        check_int(max_new_tokens, "max_new_tokens", minimum=1, maximum=self.max_new_tokens)
        prior = prompt_prior(self.hmm, prompt_ids)  # (batch, K): the HMM has read the prompt
        batch, device = prior.shape[0], prior.device
        return AttributeState(prior,
                              torch.zeros(batch, dtype=self.hmm.emission.dtype, device=device),
                              torch.zeros(batch, dtype=torch.int64, device=device),
                              max_new_tokens)

    def log_eap(self, state: AttributeState) -> Tensor:
        """``(batch, V)``: log EAP(prefix, v) = log E_HMM[p(a | x) | prefix, v] for every
        next token ``v``."""
        remaining = state.max_new_tokens - state.step - 1  # (batch,)
        if bool((remaining < 0).any()):
            raise ValueError(f"state: a row has used its budget of {state.max_new_tokens} "
                             "new tokens")
        g = self.table.values[remaining]  # (batch, K)
        h = torch.stack([state.prior, state.prior * g], 1).to(self._emission_mm.dtype)
        mix = (h @ self._emission_mm).to(state.prior.dtype)  # (batch, 2, V)
        ratio = mix[:, 1].log() - mix[:, 0].log()
        ratio = torch.nan_to_num(ratio, nan=0.0)  # tokens the HMM never emits: no information
        return (state.log_prefix[:, None] + self._weights + ratio
                + self.table.log_scale[remaining][:, None])

    def process(self, log_probs: Tensor, state: AttributeState) -> Tensor:
        check_shape(check_tensor(log_probs, "log_probs"), "log_probs",
                    (state.prior.shape[0], self.hmm.vocab_size))
        if self.strength == 0:
            return log_probs
        log_eap = self.log_eap(state).clamp(max=0.0).to(log_probs.dtype)
        if self.rule == "power":
            return log_probs + self.strength * log_eap
        log_odds = log_eap - torch.log(-torch.expm1(log_eap))  # logit(EAP), +inf at EAP = 1
        return log_probs + torch.nn.functional.logsigmoid(self.strength * log_odds)

    def advance(self, state: AttributeState, tokens: Tensor) -> AttributeState:
        tokens = tokens.to(self._weights.device)
        return dataclasses.replace(state, prior=hmm_predict(self.hmm, state.prior, tokens),
                                   log_prefix=state.log_prefix + self._weights[tokens],
                                   step=state.step + 1)

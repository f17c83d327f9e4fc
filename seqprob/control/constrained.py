"""Constrained decoding with an HMM and a token-level DFA (GeLaTo / Ctrl-G).

The next token is drawn from p(x_t | x_<t, alpha) ∝ p_LM(x_t | x_<t) · P_hmm(alpha | x_<=t),
where alpha is "the DFA accepts the text at the end of generation" and P_hmm is exact under
the HMM. With ``n`` tokens still to generate (this one included), a DFA in state ``q`` and
``gamma`` ``(K,)`` the HMM's distribution of the hidden state that emits the next token given
the prefix,

    P_hmm(alpha | x_<t, v) = sum_z gamma(z) B[z, v] G_{n-1}(delta(q, v), z)
                             / sum_z gamma(z) B[z, v],

with ``B`` the emission matrix ``(K, V)`` and ``G_r(q, z)`` the probability that the DFA, now in
state ``q``, accepts after ``r`` more HMM tokens, given the hidden state ``z`` that emitted the
last token. ``G`` is the backward table over (tokens remaining, DFA state, hidden state),
computed once per constraint by :func:`backward_table`:

    F_0(q) = acc(q),  F_r(q, z) = sum_{q'} W_{q->q'}(z) G_{r-1}(q', z),  G_r(q) = A F_r(q),

where ``W_{q->q'}(z) = sum_{v: delta(q, v) = q'} B[z, v]`` is summed over token classes once
((K x classes), never per token). Every row ``G_r(q)`` is stored scaled to a maximum of 1 with
its log scale beside it, so long constraints and unlikely keywords do not underflow.

A token is allowed exactly when P_hmm(alpha | prefix, token) > 0; since the HMM's conditional
is a martingale and starts positive (checked before decoding), every row keeps an allowed
token and the constraint is met when generation ends, whatever the decoding strategy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from seqprob.control.dfa import UNREACHABLE
from seqprob.control.hmm_tables import HMMTables, emission_for_matmul, hmm_predict, prompt_prior
from seqprob.control.tokens import TokenDFA
from seqprob.core import State
from seqprob.core.validation import check_int, check_shape, check_tensor, describe
from seqprob.kernels import control_cpu
from seqprob.lm.processors import LogitsProcessor


@dataclasses.dataclass(frozen=True, eq=False)
class BackwardTable:
    """``G_r(q, z)`` for ``r`` in ``[0, max_tokens)``: ``values`` ``(R, Q, K)`` scaled per row,
    ``log_scale`` ``(R, Q)`` (``-inf`` where acceptance is impossible); ``start_log_prob``
    ``(R + 1,)``: log P_hmm(alpha) with ``r`` tokens from the start."""

    values: Tensor
    log_scale: Tensor
    start_log_prob: Tensor

    @property
    def max_tokens(self) -> int:
        return self.values.shape[0]


def _edges(token_dfa: TokenDFA) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct (state, successor) pairs of the class DFA: ``src``, ``dst`` ``(E,)`` sorted by
    ``src``, and ``edge_of`` ``(Q, C)``, the edge of each (state, class)."""
    trans = token_dfa.dfa.transitions
    q = trans.shape[0]
    pairs, edge_of = np.unique(np.arange(q)[:, None] * q + trans, return_inverse=True)
    return (torch.from_numpy(pairs // q), torch.from_numpy(pairs % q),
            torch.from_numpy(edge_of.reshape(trans.shape)))


def _edge_weights(tables: HMMTables, token_dfa: TokenDFA, edge_of: Tensor, n_edges: int
                  ) -> Tensor:
    """``W`` ``(E, K)``: emission mass of the tokens along each edge, through the class sums
    ``M`` ``(K, C)``."""
    token_class = torch.from_numpy(token_dfa.token_class).to(tables.emission.device)
    if _on_cpu(tables):
        class_sums = control_cpu.class_sums(tables.emission, token_class, token_dfa.n_classes)
    else:
        class_sums = torch.zeros(tables.n_states, token_dfa.n_classes,
                                 dtype=tables.emission.dtype, device=tables.emission.device)
        class_sums.index_add_(1, token_class, tables.emission)  # (K, C)
    q, c = edge_of.shape
    rows = edge_of.reshape(-1).to(class_sums.device)
    cols = torch.arange(c, device=class_sums.device).repeat(q)
    select = torch.sparse_coo_tensor(torch.stack([rows, cols]),
                                     torch.ones(q * c, dtype=class_sums.dtype,
                                                device=class_sums.device),
                                     (n_edges, c), check_invariants=False).coalesce()
    return torch.sparse.mm(select, class_sums.T.contiguous())  # (E, K)


def _on_cpu(tables: HMMTables) -> bool:
    return tables.emission.device.type == "cpu"


def _depths(src: Tensor, dst: Tensor, n_dfa_states: int, start: int) -> Tensor:
    """``(Q,)``: the fewest tokens that lead from DFA state ``start`` to each DFA state
    (``n_dfa_states`` where none do), by breadth-first search over the edges."""
    depth = torch.full((n_dfa_states,), n_dfa_states, dtype=torch.int64)
    depth[start] = 0
    frontier, d = torch.tensor([start]), 0
    while frontier.numel():
        d += 1
        succ = torch.unique(dst[torch.isin(src, frontier)])
        frontier = succ[depth[succ] > d]
        depth[frontier] = d
    return depth


class _EdgeSum:
    """``F`` ``(Q, K)`` from ``G`` ``(Q, K)``: ``F(q) = sum_{edges q->q'} W_e G(q') shift_e``,
    a numba kernel on CPU, an index-add elsewhere."""

    def __init__(self, tables: HMMTables, src: Tensor, dst: Tensor, weights: Tensor,
                 n_dfa_states: int):
        self.src, self.dst, self.weights = src, dst, weights
        self.n_dfa_states = n_dfa_states
        self.cpu = _on_cpu(tables)
        if self.cpu:
            self.offsets = torch.searchsorted(src, torch.arange(n_dfa_states + 1))
        else:
            self.buffer = torch.empty_like(weights)  # (E, K), reused by every step

    def __call__(self, g: Tensor, shift: Tensor) -> Tensor:
        if self.cpu:
            return control_cpu.edge_sums(g, self.weights, self.dst, shift, self.offsets,
                                         self.n_dfa_states)
        torch.index_select(g, 0, self.dst, out=self.buffer)
        self.buffer.mul_(self.weights).mul_(shift[:, None])
        f = torch.zeros(self.n_dfa_states, g.shape[1], dtype=g.dtype, device=g.device)
        return f.index_add_(0, self.src, self.buffer)


def backward_table(tables: HMMTables, token_dfa: TokenDFA, max_tokens: int, *,
                   matmul_dtype: torch.dtype | None = None) -> BackwardTable:
    """The backward table for generating up to ``max_tokens`` tokens (see the module
    docstring): one edge-weighted sum and one batched ``(Q, K) @ (K, K)`` product per step,
    the product in ``matmul_dtype`` (default: the tables' dtype). Rows that no generation
    within ``max_tokens`` reads are left at zero: ``G_r(q)`` is computed only where ``q`` is
    reached from the start within ``max_tokens - r`` tokens and can still accept within
    ``r``."""
    check_int(max_tokens, "max_tokens", minimum=1)
    _check_vocab(tables, token_dfa)
    device, dtype = tables.emission.device, tables.emission.dtype
    src, dst, edge_of = _edges(token_dfa)
    n_dfa_states, k = token_dfa.dfa.n_dfa_states, tables.n_states
    start_q = token_dfa.dfa.start
    depth = _depths(src, dst, n_dfa_states, start_q).to(device)  # (Q,)
    to_accept = torch.from_numpy(token_dfa.dfa.distances()).to(device)  # (Q,)
    src, dst, edge_of = src.to(device), dst.to(device), edge_of.to(device)
    weights = _edge_weights(tables, token_dfa, edge_of, src.shape[0])  # (E, K)
    edge_sum = _EdgeSum(tables, src, dst, weights, n_dfa_states)
    transition_t = tables.transition.T.to(matmul_dtype or dtype).contiguous()  # (K, K)
    acc = torch.from_numpy(token_dfa.dfa.accepting).to(device)
    values = torch.zeros(max_tokens, n_dfa_states, k, dtype=dtype, device=device)  # (R, Q, K)
    scales = torch.full((max_tokens, n_dfa_states), float("-inf"), dtype=dtype, device=device)
    start = torch.empty(max_tokens + 1, dtype=dtype, device=device)
    values[0] = acc.to(dtype)[:, None]  # G_0 = acc
    scales[0] = torch.where(acc, 0.0, float("-inf"))
    start[0] = scales[0, start_q]
    for r in range(1, max_tokens + 1):
        g, scale = values[r - 1], scales[r - 1]
        top = torch.full((n_dfa_states,), float("-inf"), dtype=dtype, device=device)
        top.scatter_reduce_(0, src, scale[dst], reduce="amax")  # (Q,) largest successor scale
        shift = torch.nan_to_num(scale[dst] - top[src], nan=float("-inf")).exp()  # (E,)
        f = edge_sum(g, shift)  # F_r / exp(top) (Q, K)
        start[r] = torch.log(tables.initial @ f[start_q]) + top[start_q]
        if r == max_tokens:
            break
        rows = torch.nonzero((depth <= max_tokens - r) & (to_accept <= r)).squeeze(1)
        g = (f[rows].to(transition_t.dtype) @ transition_t).to(dtype)  # G_r = F_r A^T
        peak = g.amax(dim=1)  # (rows,)
        live = peak > 0
        values[r, rows] = torch.where(live[:, None], g / torch.where(live, peak, 1)[:, None], 0)
        scales[r, rows] = torch.where(live, top[rows] + torch.log(torch.where(live, peak, 1)),
                                      float("-inf"))
    return BackwardTable(values, scales, start)


def _check_vocab(tables: HMMTables, token_dfa: TokenDFA) -> None:
    if not isinstance(token_dfa, TokenDFA):
        raise TypeError(f"token_dfa: expected a TokenDFA, got {describe(token_dfa)}")
    if tables.vocab_size != token_dfa.vocab_size:
        raise ValueError(f"hmm: expected an emission matrix over the constraint's vocabulary of "
                         f"{token_dfa.vocab_size} tokens, got {tables.vocab_size}")


def _check_satisfiable(token_dfa: TokenDFA, distances: np.ndarray, budget: int) -> None:
    shortest = int(distances[token_dfa.dfa.start])
    if shortest == UNREACHABLE:
        raise ValueError("token_dfa: the constraint accepts no token sequence (conflicting "
                         "constraints, e.g. a keyword both required and banned, or words "
                         "the tokenizer cannot produce)")
    if shortest > budget:
        raise ValueError(f"max_new_tokens: the constraint needs at least {shortest} tokens, "
                         f"got a budget of {budget}")


@dataclasses.dataclass
class DFAState(State):
    """Per row: ``dfa_state`` and ``step`` ``(batch,)`` int64; ``max_new_tokens``."""

    dfa_state: Tensor
    step: Tensor
    max_new_tokens: int


class DFAMask(LogitsProcessor):
    """Forbids exactly the tokens after which ``token_dfa`` can no longer accept within the
    remaining budget: the constraint is met without an HMM, but the LM's distribution is only
    truncated, not reweighted by how likely the constraint is later (that is
    :class:`ConstraintProcessor`). Right for constraints that are easy to keep, such as bans."""

    def __init__(self, token_dfa: TokenDFA, *, max_new_tokens: int) -> None:
        if not isinstance(token_dfa, TokenDFA):
            raise TypeError(f"token_dfa: expected a TokenDFA, got {describe(token_dfa)}")
        self.token_dfa = token_dfa
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        self.distances = token_dfa.dfa.distances()
        _check_satisfiable(token_dfa, self.distances, max_new_tokens)
        self._successor = torch.from_numpy(token_dfa.token_transitions())  # (Q, V)
        self._distances = torch.from_numpy(self.distances)  # (Q,)

    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> DFAState:
        check_shape(check_tensor(prompt_ids, "prompt_ids"), "prompt_ids", (None, None))
        check_int(max_new_tokens, "max_new_tokens", minimum=1, maximum=self.max_new_tokens)
        _check_satisfiable(self.token_dfa, self.distances, max_new_tokens)
        batch = prompt_ids.shape[0]
        return DFAState(torch.full((batch,), self.token_dfa.dfa.start, dtype=torch.int64),
                        torch.zeros(batch, dtype=torch.int64), max_new_tokens)

    def process(self, log_probs: Tensor, state: DFAState) -> Tensor:
        check_shape(check_tensor(log_probs, "log_probs"), "log_probs",
                    (state.dfa_state.shape[0], self.token_dfa.vocab_size))
        remaining = state.max_new_tokens - state.step - 1  # (batch,)
        reach = self._distances[self._successor[state.dfa_state]]  # (batch, V)
        allowed = (reach <= remaining[:, None]).to(log_probs.device)
        return log_probs.masked_fill(~allowed, float("-inf"))

    def advance(self, state: DFAState, tokens: Tensor) -> DFAState:
        successor = self._successor[state.dfa_state, tokens.cpu()]
        return dataclasses.replace(state, dfa_state=successor, step=state.step + 1)


@dataclasses.dataclass
class ConstraintState(State):
    """Per row: ``dfa_state`` ``(batch,)`` int64, ``prior`` ``(batch, K)`` — the HMM's
    distribution of the hidden state that emits the next token — and ``step`` ``(batch,)``,
    the tokens generated so far; ``max_new_tokens`` is the budget."""

    dfa_state: Tensor
    prior: Tensor
    step: Tensor
    max_new_tokens: int


class ConstraintProcessor(LogitsProcessor):
    """p(x_t | x_<t, alpha) ∝ p_LM(x_t | x_<t) · P_hmm(alpha | x_<=t) for one constraint.

    ``hmm``: :class:`HMMTables` over the LM's vocabulary; ``token_dfa``: the constraint;
    ``max_new_tokens``: the longest generation the backward table is built for (computed here,
    once; a constraint that cannot be met within it is refused); ``matmul_dtype``: the dtype of
    the large products, the table's ``(Q, K) @ (K, K)`` and the per-step ``(rows, K) @ (K, V)``
    (``torch.bfloat16`` halves the memory they read and is faster where the CPU has bf16
    instructions; satisfaction does not depend on it, as the DFA decides which tokens are
    allowed and rescaled rows keep every positive probability positive).
    The HMM reads each row's prompt first (:func:`~seqprob.control.hmm_tables.prompt_prior`),
    so the constraint is conditioned on it; the DFA starts at the first new token."""

    n_dense = 3  # successors per DFA state scored by one GEMM over the whole vocabulary

    def __init__(self, hmm: HMMTables, token_dfa: TokenDFA, *, max_new_tokens: int,
                 matmul_dtype: torch.dtype | None = None) -> None:
        if not isinstance(hmm, HMMTables):
            raise TypeError(f"hmm: expected HMMTables (see hmm_tables), got {describe(hmm)}")
        _check_vocab(hmm, token_dfa)
        self.hmm = hmm
        self.token_dfa = token_dfa
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        self.distances = token_dfa.dfa.distances()
        _check_satisfiable(token_dfa, self.distances, max_new_tokens)
        self.table = backward_table(hmm, token_dfa, max_new_tokens, matmul_dtype=matmul_dtype)
        if not bool(torch.isfinite(self.table.start_log_prob[max_new_tokens])):
            raise ValueError("token_dfa: the HMM gives the constraint probability 0 within "
                             f"max_new_tokens={max_new_tokens} tokens (it uses tokens the HMM "
                             "never emits)")
        device = hmm.emission.device
        self._transitions = torch.from_numpy(token_dfa.dfa.transitions).to(device)  # (Q, C)
        self._token_class = torch.from_numpy(token_dfa.token_class).to(device)  # (V,)
        self._dense = self._dense_successors().to(device)  # (Q, n_dense)
        self._distances = torch.from_numpy(self.distances).to(device)  # (Q,)
        self._emission_mm = emission_for_matmul(hmm, matmul_dtype)  # (K, V)

    def _dense_successors(self) -> Tensor:
        """``(Q, n_dense)``: the successors that the most tokens lead to from each state."""
        trans = self.token_dfa.dfa.transitions
        q = trans.shape[0]
        size = np.bincount(self.token_dfa.token_class, minlength=self.token_dfa.n_classes)
        counts = np.zeros((q, q), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(q), trans.shape[1]), trans.reshape(-1)),
                  np.tile(size, q))
        top = np.argsort(-counts, axis=1, kind="stable")[:, :self.n_dense]
        return torch.from_numpy(np.where(np.take_along_axis(counts, top, 1) > 0, top, -1))

    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> ConstraintState:
        check_int(max_new_tokens, "max_new_tokens", minimum=1, maximum=self.max_new_tokens)
        _check_satisfiable(self.token_dfa, self.distances, max_new_tokens)
        prior = prompt_prior(self.hmm, prompt_ids)  # (batch, K)
        batch, device = prior.shape[0], prior.device
        return ConstraintState(
            torch.full((batch,), self.token_dfa.dfa.start, dtype=torch.int64, device=device),
            prior,
            torch.zeros(batch, dtype=torch.int64, device=device), max_new_tokens)

    def log_conditional(self, state: ConstraintState) -> Tensor:
        """``(batch, V)``: log P_hmm(alpha | prefix, v) for every next token ``v`` (``-inf``
        where the constraint can no longer be met)."""
        remaining = state.max_new_tokens - state.step - 1  # tokens after this one (batch,)
        if bool((remaining < 0).any()):
            raise ValueError(f"state: a row has used its budget of {state.max_new_tokens} "
                             "new tokens")
        values = self.table.values  # (R, Q, K)
        succ = self._transitions[state.dfa_state]  # (batch, C): successor of every class
        dense = self._dense[state.dfa_state]  # (batch, D), -1 = none
        g_dense = values[remaining[:, None], dense.clamp(min=0)]  # (batch, D, K)
        h = torch.cat([state.prior[:, None], state.prior[:, None] * g_dense], 1)
        mix = (h.to(self._emission_mm.dtype) @ self._emission_mm).to(h.dtype)  # (batch, 1+D, V)
        match = succ[:, :, None] == dense[:, None, :]  # (batch, C, D)
        slot = torch.where(match.any(-1), match.to(torch.int8).argmax(-1), -1)  # (batch, C)
        log_scale = self.table.log_scale[remaining[:, None], succ]  # (batch, C)
        too_far = self._distances[succ] > remaining[:, None]
        log_scale = log_scale.masked_fill(too_far, float("-inf"))
        token_class = self._token_class.expand(succ.shape[0], -1)  # (batch, V)
        slot, log_scale = slot.gather(1, token_class), log_scale.gather(1, token_class)
        numerator = mix[:, 1:].gather(1, slot.clamp(min=0)[:, None]).squeeze(1)  # (batch, V)
        b_idx, v_idx = torch.nonzero(slot < 0, as_tuple=True)  # the few other tokens
        if b_idx.numel():
            s_idx = succ[b_idx, self._token_class[v_idx]]
            numerator = numerator.index_put(
                (b_idx, v_idx), (state.prior[b_idx] * self.hmm.emission[:, v_idx].T
                                 * values[remaining[b_idx], s_idx]).sum(-1))
        log_p = numerator.log() + log_scale - mix[:, 0].log()
        return torch.nan_to_num(log_p, nan=float("-inf")).clamp(max=0.0)

    def process(self, log_probs: Tensor, state: ConstraintState) -> Tensor:
        check_shape(check_tensor(log_probs, "log_probs"), "log_probs",
                    (state.prior.shape[0], self.hmm.vocab_size))
        scores = log_probs + self.log_conditional(state).to(log_probs.dtype)
        if bool(torch.isneginf(scores).all(-1).any()):
            raise ValueError("log_probs: a row allows no token that keeps the constraint "
                             "satisfiable (an earlier processor forbade all of them)")
        return scores

    def advance(self, state: ConstraintState, tokens: Tensor) -> ConstraintState:
        tokens = tokens.to(self._token_class.device)
        dfa_state = self._transitions[state.dfa_state, self._token_class[tokens]]
        return dataclasses.replace(state, dfa_state=dfa_state,
                                   prior=hmm_predict(self.hmm, state.prior, tokens),
                                   step=state.step + 1)

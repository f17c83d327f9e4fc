"""Deterministic finite automata over an integer alphabet: products, complement, Hopcroft
minimization, reachability and shortest accepted lengths.

A :class:`DFA` is a dense transition table ``transitions`` ``(n_dfa_states, n_symbols)``
(int64, entries in ``[0, n_dfa_states)``; the automaton is complete, so a rejecting sink state
stands in for "no transition"), a boolean ``accepting`` mask ``(n_dfa_states,)`` and a
``start`` state. ``n_dfa_states`` is named apart from an HMM's hidden ``n_states``. Word-,
byte- and token-level constraints (``seqprob.control.words``, ``seqprob.control.tokens``) are all
this one type over different alphabets.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable

import numpy as np

from seqprob.core.validation import check_int, describe

UNREACHABLE = np.iinfo(np.int64).max


@dataclasses.dataclass(frozen=True, eq=False)
class DFA:
    """A complete DFA: ``transitions`` ``(n_dfa_states, n_symbols)``, ``accepting``
    ``(n_dfa_states,)``."""

    transitions: np.ndarray
    accepting: np.ndarray
    start: int = 0

    def __post_init__(self) -> None:
        trans = np.asarray(self.transitions)
        acc = np.asarray(self.accepting)
        if trans.ndim != 2 or not np.issubdtype(trans.dtype, np.integer) or trans.shape[0] < 1:
            raise ValueError("transitions: expected an integer array (n_dfa_states >= 1, "
                             f"n_symbols), got {describe(trans)}")
        if acc.shape != (trans.shape[0],) or acc.dtype != np.bool_:
            raise ValueError(f"accepting: expected a bool array of shape ({trans.shape[0]},), "
                             f"got {describe(acc)}")
        if trans.size and (trans.min() < 0 or trans.max() >= trans.shape[0]):
            raise ValueError(f"transitions: expected entries in [0, {trans.shape[0]}), got "
                             f"entries in [{trans.min()}, {trans.max()}]")
        check_int(self.start, "start", minimum=0, maximum=trans.shape[0] - 1)
        object.__setattr__(self, "transitions", trans.astype(np.int64, copy=False))
        object.__setattr__(self, "accepting", acc)
        object.__setattr__(self, "start", int(self.start))

    @property
    def n_dfa_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def n_symbols(self) -> int:
        return self.transitions.shape[1]

    def run(self, symbols: Iterable[int], state: int | None = None) -> int:
        """The state reached from ``state`` (default: start) after reading ``symbols``."""
        q = self.start if state is None else state
        for a in symbols:
            q = int(self.transitions[q, a])
        return q

    def accepts(self, symbols: Iterable[int]) -> bool:
        return bool(self.accepting[self.run(symbols)])

    # -- boolean algebra -------------------------------------------------------------------

    def __and__(self, other: DFA) -> DFA:
        return product(self, other, np.logical_and)

    def __or__(self, other: DFA) -> DFA:
        return product(self, other, np.logical_or)

    def __invert__(self) -> DFA:
        return DFA(self.transitions, ~self.accepting, self.start)

    # -- structure ---------------------------------------------------------------------------

    def reachable(self) -> DFA:
        """The same language restricted to the states reachable from the start (renumbered in
        breadth-first order, start = 0)."""
        order = _bfs_order(self.transitions, self.start)
        new_id = np.full(self.n_dfa_states, -1, dtype=np.int64)
        new_id[order] = np.arange(order.size)
        return DFA(new_id[self.transitions[order]], self.accepting[order], 0)

    def minimize(self) -> DFA:
        """The minimal DFA of the same language (Hopcroft partition refinement)."""
        dfa = self.reachable()
        block = _hopcroft_blocks(dfa.transitions, dfa.accepting)
        n_blocks = int(block.max()) + 1
        first = np.full(n_blocks, -1, dtype=np.int64)
        first[block[::-1]] = np.arange(dfa.n_dfa_states)[::-1]  # a representative state per block
        merged = DFA(block[dfa.transitions[first]], dfa.accepting[first], int(block[dfa.start]))
        return merged.reachable()

    def distances(self) -> np.ndarray:
        """``(n_dfa_states,)`` int64: the fewest symbols that lead from each state to an accepting
        state (0 when accepting), ``UNREACHABLE`` where none do."""
        dist = np.full(self.n_dfa_states, UNREACHABLE, dtype=np.int64)
        dist[self.accepting] = 0
        preds = _predecessors(self.transitions)
        frontier = np.flatnonzero(self.accepting)
        d = 0
        while frontier.size:
            d += 1
            cand = np.unique(np.concatenate([preds[q] for q in frontier]))
            frontier = cand[dist[cand] == UNREACHABLE]
            dist[frontier] = d
        return dist

    def shortest_accepted_length(self) -> int | None:
        """The length of the shortest accepted sequence, ``None`` if the language is empty."""
        d = int(self.distances()[self.start])
        return None if d == UNREACHABLE else d

    def is_empty(self) -> bool:
        return self.shortest_accepted_length() is None


def product(a: DFA, b: DFA, combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> DFA:
    """The product automaton accepting where ``combine(a.accepting, b.accepting)`` holds
    (``np.logical_and`` for AND, ``np.logical_or`` for OR), restricted to reachable pairs and
    minimized."""
    if a.n_symbols != b.n_symbols:
        raise ValueError(f"DFA product: both automata need the same alphabet, got "
                         f"{a.n_symbols} and {b.n_symbols} symbols")
    trans = a.transitions[:, None, :] * b.n_dfa_states + b.transitions[None, :, :]
    trans = trans.reshape(a.n_dfa_states * b.n_dfa_states, a.n_symbols)  # (Qa*Qb, S)
    acc = combine(a.accepting[:, None], b.accepting[None, :]).reshape(-1)
    return DFA(trans, acc, a.start * b.n_dfa_states + b.start).minimize()


def _bfs_order(transitions: np.ndarray, start: int) -> np.ndarray:
    seen = np.zeros(transitions.shape[0], dtype=bool)
    seen[start] = True
    order = [start]
    queue = deque([start])
    while queue:
        succ = np.unique(transitions[queue.popleft()])
        new = succ[~seen[succ]]
        seen[new] = True
        order.extend(new.tolist())
        queue.extend(new.tolist())
    return np.asarray(order, dtype=np.int64)


def _predecessors(transitions: np.ndarray) -> list[np.ndarray]:
    """For every state, the distinct states with an edge into it."""
    n = transitions.shape[0]
    src = np.repeat(np.arange(n), transitions.shape[1])
    dst = transitions.reshape(-1)
    pairs = np.unique(dst * n + src)
    dst, src = pairs // n, pairs % n
    bounds = np.searchsorted(dst, np.arange(n + 1))
    return [src[bounds[q]:bounds[q + 1]] for q in range(n)]


def _hopcroft_blocks(transitions: np.ndarray, accepting: np.ndarray) -> np.ndarray:
    """Hopcroft's algorithm with a worklist of splitter blocks, each used for every symbol at
    once. A block ``Y`` split by a splitter keeps its id on one piece (the states the splitter
    does not reach, else its largest piece) and the other pieces get new ids, which all join
    the worklist: Hopcroft's rule "replace Y by its pieces if Y is waiting, else add all but
    one" (the piece left out is implied by Y and the others). Returns the block of every state
    ``(n_dfa_states,)``."""
    n, _ = transitions.shape
    block = accepting.astype(np.int64)
    if accepting.all() or not accepting.any():
        return np.zeros(n, dtype=np.int64)
    preds = _predecessors(transitions)
    smaller = 1 if accepting.sum() <= n - accepting.sum() else 0
    work = [smaller]
    n_blocks = 2
    while work:
        in_splitter = block == work.pop()
        rows = np.unique(np.concatenate([preds[q] for q in np.flatnonzero(in_splitter)]))
        if rows.size == 0:
            continue
        hits = np.packbits(in_splitter[transitions[rows]], axis=1)  # (R, ceil(S/8))
        keys = np.concatenate([block[rows, None].view(np.uint8).reshape(rows.size, -1), hits], 1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        group = group.reshape(-1)
        n_groups = int(group.max()) + 1
        group_block = np.zeros(n_groups, dtype=np.int64)
        group_block[group] = block[rows]
        group_size = np.bincount(group, minlength=n_groups)
        block_size = np.bincount(block, minlength=n_blocks)
        rest = block_size[group_block] - np.bincount(group_block, weights=group_size,
                                                     minlength=n_blocks)[group_block]
        # Pieces of a block: its groups among `rows`, plus the untouched remainder (`rest`).
        new_ids = np.full(n_groups, -1, dtype=np.int64)
        for b in np.unique(group_block):
            gs = np.flatnonzero(group_block == b)
            remainder = int(rest[gs[0]])
            if gs.size == 1 and remainder == 0:
                continue
            keep = None if remainder else gs[np.argmax(group_size[gs])]
            for g in gs:
                if g != keep:
                    new_ids[g] = n_blocks
                    work.append(n_blocks)
                    n_blocks += 1
        moved = new_ids[group] >= 0
        block[rows[moved]] = new_ids[group[moved]]
    _, block = np.unique(block, return_inverse=True)
    return block.reshape(-1).astype(np.int64)


def equivalent(a: DFA, b: DFA) -> bool:
    """Whether two DFAs over the same alphabet accept the same language."""
    return ((a & ~b) | (~a & b)).is_empty()

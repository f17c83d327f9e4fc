"""DFAs: boolean algebra, Hopcroft minimization and lengths against brute-force enumeration."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.control.dfa import DFA, equivalent


@st.composite
def dfas(draw, n_symbols=None):
    n = draw(st.integers(1, 7))
    s = n_symbols if n_symbols is not None else draw(st.integers(1, 3))
    trans = draw(st.lists(st.integers(0, n - 1), min_size=n * s, max_size=n * s))
    acc = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    start = draw(st.integers(0, n - 1))
    return DFA(np.array(trans).reshape(n, s), np.array(acc), start)


def strings(n_symbols, max_len):
    for length in range(max_len + 1):
        yield from itertools.product(range(n_symbols), repeat=length)


def language(dfa, max_len=6):
    return {w for w in strings(dfa.n_symbols, max_len) if dfa.accepts(w)}


def brute_minimal_size(dfa):
    """Myhill–Nerode: reachable states told apart by some string of length < n_dfa_states."""
    reach = {dfa.run(w) for w in strings(dfa.n_symbols, dfa.n_dfa_states)}
    tests = list(strings(dfa.n_symbols, dfa.n_dfa_states))
    return len({tuple(bool(dfa.accepting[dfa.run(w, q)]) for w in tests) for q in reach})


@settings(max_examples=60, deadline=None)
@given(dfas())
def test_minimize_preserves_language_and_is_minimal(dfa):
    small = dfa.minimize()
    assert language(small) == language(dfa)
    assert small.n_dfa_states == brute_minimal_size(dfa)
    assert small.start == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2).flatmap(lambda s: st.tuples(dfas(s), dfas(s))))
def test_and_or_not_agree_with_boolean_combinations(pair):
    a, b = pair
    la, lb, every = language(a), language(b), set(strings(a.n_symbols, 6))
    assert language(a & b) == la & lb
    assert language(a | b) == la | lb
    assert language(~a) == every - la
    assert equivalent(a, a.minimize())
    assert equivalent(a & b, b & a)


@settings(max_examples=60, deadline=None)
@given(dfas())
def test_shortest_accepted_length_and_distances(dfa):
    lengths = [len(w) for w in strings(dfa.n_symbols, dfa.n_dfa_states) if dfa.accepts(w)]
    expected = min(lengths) if lengths else None
    assert dfa.shortest_accepted_length() == expected
    assert dfa.is_empty() == (expected is None)
    dist = dfa.distances()
    for q in range(dfa.n_dfa_states):
        reach = [len(w) for w in strings(dfa.n_symbols, dfa.n_dfa_states)
                 if dfa.accepting[dfa.run(w, q)]]
        assert (dist[q] == min(reach)) if reach else dist[q] > dfa.n_dfa_states


def test_reachable_drops_unreachable_states():
    dfa = DFA(np.array([[0, 0], [1, 0]]), np.array([False, True]))
    assert dfa.reachable().n_dfa_states == 1
    assert dfa.is_empty()


@pytest.mark.parametrize(("trans", "acc", "start", "match"), [
    (np.zeros((2,)), np.array([True, False]), 0, "transitions: expected an integer array"),
    (np.array([[0], [2]]), np.array([True, False]), 0, r"entries in \[0, 2\)"),
    (np.array([[0], [1]]), np.array([1, 0]), 0, "accepting: expected a bool array"),
    (np.array([[0], [1]]), np.array([True, False]), 2, "start: expected an integer <= 1"),
])
def test_bad_dfa_is_refused(trans, acc, start, match):
    with pytest.raises(ValueError, match=match):
        DFA(trans, acc, start)


def test_product_needs_the_same_alphabet():
    a = DFA(np.zeros((1, 2), dtype=int), np.array([True]))
    b = DFA(np.zeros((1, 3), dtype=int), np.array([True]))
    with pytest.raises(ValueError, match="same alphabet, got 2 and 3"):
        a & b

"""The numba kernels of the constraint backward table against their torch forms."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.control import constrained, hmm_tables
from seqprob.control.constrained import backward_table
from seqprob.control.tokens import compile_keywords
from seqprob.kernels import control_cpu


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 6), v=st.integers(1, 40), c=st.integers(1, 5), seed=st.integers(0, 99))
def test_class_sums_match_index_add(k, v, c, seed):
    g = torch.Generator().manual_seed(seed)
    emission = torch.rand(k, v, generator=g, dtype=torch.float64)
    token_class = torch.randint(0, c, (v,), generator=g)
    want = torch.zeros(k, c, dtype=torch.float64).index_add_(1, token_class, emission)
    torch.testing.assert_close(control_cpu.class_sums(emission, token_class, c), want)


@settings(max_examples=20, deadline=None)
@given(q=st.integers(1, 6), k=st.integers(1, 5), e=st.integers(1, 20), seed=st.integers(0, 99))
def test_edge_sums_match_a_direct_sum(q, k, e, seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.sort(torch.randint(0, q, (e,), generator=gen)).values
    dst = torch.randint(0, q, (e,), generator=gen)
    g, weights = torch.rand(q, k, generator=gen), torch.rand(e, k, generator=gen)
    shift = torch.rand(e, generator=gen) * (torch.rand(e, generator=gen) > 0.3)
    want = torch.zeros(q, k).index_add_(0, src, weights * g[dst] * shift[:, None])
    offsets = torch.searchsorted(src, torch.arange(q + 1))
    torch.testing.assert_close(control_cpu.edge_sums(g, weights, dst, shift, offsets, q), want)


def test_backward_table_kernels_equal_torch_path(monkeypatch):
    pieces = [b"", b" the", b" cat", b" cats", b" sat", b".", b" a", b"c", b"at", b"s"]
    dfa = compile_keywords(["cat", "sit"], pieces, eos_token_id=0)
    g = torch.Generator().manual_seed(0)
    tables = hmm_tables(torch.log_softmax(torch.randn(4, generator=g, dtype=torch.float64), -1),
                        torch.log_softmax(torch.randn(4, 4, generator=g, dtype=torch.float64), -1),
                        torch.log_softmax(torch.randn(4, 10, generator=g, dtype=torch.float64), -1))
    fast = backward_table(tables, dfa, 8)
    monkeypatch.setattr(constrained, "_on_cpu", lambda tables: False)
    slow = backward_table(tables, dfa, 8)
    torch.testing.assert_close(fast.values, slow.values)
    torch.testing.assert_close(fast.log_scale, slow.log_scale)
    torch.testing.assert_close(fast.start_log_prob, slow.start_log_prob)

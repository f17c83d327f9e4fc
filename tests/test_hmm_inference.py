"""HMM inference against brute-force enumeration of all K^T paths, and its numerics."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.hmm import inference
from tests.hmm_helpers import all_paths, random_model

METHODS = ["sequential", "blocked", "fused"]


def _problem(k=3, t=5, b=3, seed=0, zeros=False):
    log_init, log_trans = random_model(k, seed=seed, zeros=zeros)
    g = torch.Generator().manual_seed(seed + 1)
    loglik = torch.randn(b, t, k, generator=g, dtype=torch.float64) * 2
    lengths = torch.tensor([t, max(1, t - 2), 1][:b])
    return log_init, log_trans, loglik, lengths


def _brute(log_init, log_trans, loglik, lengths):
    """Per row: log-likelihood, smoothed (T, K), transition counts (K, K), Viterbi path."""
    k = log_init.shape[0]
    rows = []
    for b, length in enumerate(lengths.tolist()):
        paths, scores = all_paths(log_init, log_trans, loglik[b], length)
        log_z = torch.logsumexp(scores, 0)
        weight = torch.exp(scores - log_z)                                   # (P)
        smoothed = torch.zeros(loglik.shape[1], k, dtype=torch.float64)
        trans = torch.zeros(k, k, dtype=torch.float64)
        for t in range(length):
            smoothed[t].index_add_(0, paths[:, t], weight)
            if t + 1 < length:
                trans.index_put_((paths[:, t], paths[:, t + 1]), weight, accumulate=True)
        best = int(scores.argmax())
        rows.append((log_z, smoothed, trans, paths[best], scores[best]))
    return rows


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("zeros", [False, True])
def test_forward_backward_matches_enumeration(method, zeros):
    log_init, log_trans, loglik, lengths = _problem(zeros=zeros)
    post = inference.forward_backward(log_init, log_trans, loglik, lengths, method=method)
    filt = inference.forward_filter(log_init, log_trans, loglik, lengths)
    brute = _brute(log_init, log_trans, loglik, lengths)
    torch.testing.assert_close(post.log_likelihood, torch.stack([r[0] for r in brute]))
    torch.testing.assert_close(filt.log_likelihood, post.log_likelihood)
    torch.testing.assert_close(post.smoothed, torch.stack([r[1] for r in brute]))
    torch.testing.assert_close(post.transitions, sum(r[2] for r in brute))


def test_filtering_matches_enumeration_of_prefixes():
    log_init, log_trans, loglik, _ = _problem(t=4, b=1)
    filt = inference.forward_filter(log_init, log_trans, loglik)
    for t in range(1, 5):
        paths, scores = all_paths(log_init, log_trans, loglik[0], t)
        last = torch.zeros(3, dtype=torch.float64).index_add_(
            0, paths[:, -1], torch.softmax(scores, 0))
        torch.testing.assert_close(filt.filtered[0, t - 1], last)
        torch.testing.assert_close(filt.log_normalizers[0, :t].sum(), torch.logsumexp(scores, 0))


@pytest.mark.parametrize("zeros", [False, True])
def test_viterbi_and_map_match_enumeration(zeros):
    log_init, log_trans, loglik, lengths = _problem(zeros=zeros)
    vit = inference.viterbi(log_init, log_trans, loglik, lengths)
    mapped = inference.map_decode(log_init, log_trans, loglik, lengths)
    for b, (_, smoothed, _, path, score) in enumerate(_brute(log_init, log_trans, loglik,
                                                             lengths)):
        n = int(lengths[b])
        assert vit.path[b, :n].tolist() == path.tolist()
        assert (vit.path[b, n:] == -1).all() and (mapped.path[b, n:] == -1).all()
        torch.testing.assert_close(vit.log_prob[b], score)
        assert mapped.path[b, :n].tolist() == smoothed[:n].argmax(-1).tolist()
        assert float(mapped.log_prob[b]) <= float(vit.log_prob[b]) + 1e-12


def test_path_log_prob_is_the_enumerated_score():
    log_init, log_trans, loglik, _ = _problem(b=1)
    paths, scores = all_paths(log_init, log_trans, loglik[0], 5)
    got = inference.path_log_prob(log_init, log_trans, loglik.expand(len(paths), -1, -1), paths)
    torch.testing.assert_close(got, scores)


def test_posterior_samples_follow_the_posterior():
    log_init, log_trans, loglik, _ = _problem(k=2, t=3, b=1)
    paths, scores = all_paths(log_init, log_trans, loglik[0], 3)
    n = 20000
    g = torch.Generator().manual_seed(0)
    draws = inference.sample_posterior(log_init, log_trans, loglik.expand(n, -1, -1), generator=g)
    codes = (draws * torch.tensor([4, 2, 1])).sum(-1)
    freq = torch.bincount(codes, minlength=8).double() / n
    want = torch.softmax(scores, 0)[(paths * torch.tensor([4, 2, 1])).sum(-1).argsort()]
    torch.testing.assert_close(freq, want, atol=0.015, rtol=0)


def test_ragged_batch_equals_each_sequence_alone():
    log_init, log_trans = random_model(4, seed=3)
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([9, 4, 1, 7])
    loglik = torch.randn(4, 9, 4, generator=g, dtype=torch.float64)
    post = inference.forward_backward(log_init, log_trans, loglik, lengths)
    vit = inference.viterbi(log_init, log_trans, loglik, lengths)
    total = torch.zeros(4, 4, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        alone = inference.forward_backward(log_init, log_trans, loglik[b:b + 1, :n])
        torch.testing.assert_close(post.log_likelihood[b], alone.log_likelihood[0])
        torch.testing.assert_close(post.smoothed[b, :n], alone.smoothed[0])
        assert (post.smoothed[b, n:] == 0).all()
        total += alone.transitions
        alone_vit = inference.viterbi(log_init, log_trans, loglik[b:b + 1, :n])
        assert vit.path[b, :n].tolist() == alone_vit.path[0].tolist()
    torch.testing.assert_close(post.transitions, total)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 5), t=st.integers(2, 70), b=st.integers(1, 3), seed=st.integers(0, 99))
def test_blocked_and_fused_equal_sequential(k, t, b, seed):
    log_init, log_trans = random_model(k, seed=seed, zeros=seed % 2 == 1)
    g = torch.Generator().manual_seed(seed)
    loglik = torch.randn(b, t, k, generator=g, dtype=torch.float64) * 3
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    seq = inference.forward_backward(log_init, log_trans, loglik, lengths, method="sequential")
    inside = (torch.arange(t) < lengths[:, None])[..., None]                # (B T 1)
    close = dict(rtol=1e-9, atol=1e-9)
    for method in ("blocked", "fused"):
        got = inference.forward_backward(log_init, log_trans, loglik, lengths, method=method)
        torch.testing.assert_close(got.log_likelihood, seq.log_likelihood, **close)
        torch.testing.assert_close(got.smoothed, seq.smoothed, **close)
        torch.testing.assert_close(got.filtered * inside, seq.filtered * inside, **close)
        torch.testing.assert_close(got.transitions, seq.transitions, **close)


def test_auto_method_choice():
    assert inference._cost_prefers_blocked(batch=1, length=100_000, k=4)
    assert not inference._cost_prefers_blocked(batch=256, length=32, k=1024)
    small = inference._prepare(torch.zeros(4), torch.zeros(4, 4), torch.zeros(2, 9, 4), None)
    assert inference._resolve("auto", small, smoothing=True) == "fused"
    assert inference._resolve("auto", small) == "sequential"
    big = inference._prepare(torch.zeros(64), torch.zeros(64, 64), torch.zeros(2, 9, 64), None)
    assert inference._resolve("auto", big, smoothing=True) == "sequential"
    grad = torch.zeros(4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="fused"):
        inference.forward_backward(torch.zeros(4), grad, torch.zeros(2, 9, 4), method="fused")
    with pytest.raises(ValueError, match="fused"):
        inference.forward_filter(torch.zeros(4), torch.zeros(4, 4), torch.zeros(2, 9, 4),
                                 method="fused")


@pytest.mark.parametrize("method", [pytest.param("sequential", marks=pytest.mark.slow),
                                    "blocked", "fused"])
def test_very_long_sequence_is_stable_in_float32(method):
    """T = 100,000: the float32 results are finite and agree with the float64 ones."""
    log_init, log_trans = random_model(3, seed=5)
    g = torch.Generator().manual_seed(6)
    loglik = torch.randn(1, 100_000, 3, generator=g, dtype=torch.float64) * 4 - 30
    ref = inference.forward_backward(log_init, log_trans, loglik, method="blocked")
    got = inference.forward_backward(log_init.float(), log_trans.float(), loglik.float(),
                                     method=method)
    assert torch.isfinite(got.log_likelihood).all()
    torch.testing.assert_close(got.log_likelihood.double(), ref.log_likelihood, rtol=1e-5,
                               atol=0)
    torch.testing.assert_close(got.smoothed.sum(-1), torch.ones(1, 100_000))
    torch.testing.assert_close(got.transitions.double(), ref.transitions, rtol=1e-3, atol=0)
    torch.testing.assert_close(got.smoothed.double(), ref.smoothed, rtol=0, atol=1e-4)


def test_near_deterministic_transitions():
    """Transition probabilities of 1e-300 (float64) still give exact posteriors."""
    k = 3
    trans = torch.full((k, k), 1e-300, dtype=torch.float64)
    trans += torch.eye(k, dtype=torch.float64).roll(1, 1) * (1 - 2e-300)
    log_trans, log_init = torch.log(trans), torch.log(torch.tensor([1.0, 1e-300, 1e-300],
                                                                   dtype=torch.float64))
    loglik = torch.zeros(1, 6, k, dtype=torch.float64)
    post = inference.forward_backward(log_init, log_trans, loglik)
    want = torch.eye(k, dtype=torch.float64)[torch.arange(6) % k]
    torch.testing.assert_close(post.smoothed[0], want)
    _, scores = all_paths(log_init, log_trans, loglik[0], 6)
    torch.testing.assert_close(post.log_likelihood[0], torch.logsumexp(scores, 0))
    assert inference.viterbi(log_init, log_trans, loglik).path[0].tolist() == [0, 1, 2, 0, 1, 2]


def test_impossible_observation_gives_minus_infinity_not_nan():
    log_init, log_trans = random_model(2)
    loglik = torch.zeros(1, 3, 2, dtype=torch.float64)
    loglik[0, 1] = -torch.inf
    post = inference.forward_backward(log_init, log_trans, loglik)
    assert post.log_likelihood[0] == -torch.inf
    assert not torch.isnan(post.smoothed).any() and not torch.isnan(post.transitions).any()
    with pytest.raises(ValueError, match="probability zero"):
        inference.sample_posterior(log_init, log_trans, loglik)


@pytest.mark.parametrize(("args", "match"), [
    (dict(loglik=torch.zeros(2, 3)), "loglik: expected 3 dimensions"),
    (dict(log_trans=torch.zeros(3, 2)), "log_trans: expected shape"),
    (dict(log_init=torch.zeros(4)), "log_init: expected shape"),
    (dict(lengths=torch.tensor([0, 2])), "lengths: expected entries in"),
    (dict(lengths=torch.tensor([5, 2])), "lengths: expected entries in"),
    (dict(lengths=torch.tensor([1, 2, 3])), "lengths: expected shape"),
    (dict(loglik=torch.zeros(2, 0, 3)), "at least one time step"),
])
def test_bad_input_raises(args, match):
    kwargs = dict(log_init=torch.zeros(3), log_trans=torch.zeros(3, 3),
                  loglik=torch.zeros(2, 4, 3), lengths=None) | args
    with pytest.raises(ValueError, match=match):
        inference.forward_backward(**kwargs)


@pytest.mark.parametrize("entry", ["map_decode", "sample_posterior", "forward_backward",
                                   "forward_filter", "viterbi", "path_log_prob"])
def test_public_entries_check_their_inputs_once(entry, monkeypatch):
    calls = []
    check = inference._check_inputs
    monkeypatch.setattr(inference, "_check_inputs",
                        lambda *args: calls.append(1) or check(*args))
    log_init, log_trans, loglik, lengths = _problem()
    extra = (torch.zeros(loglik.shape[:2], dtype=torch.long),) if entry == "path_log_prob" else ()
    getattr(inference, entry)(log_init, log_trans, loglik, *extra, lengths)
    assert len(calls) == 1


def test_bad_lengths_in_decoding_and_sampling_raise():
    log_init, log_trans, loglik, _ = _problem()
    for fn in (inference.map_decode, inference.sample_posterior):
        with pytest.raises(ValueError, match="lengths: expected entries in"):
            fn(log_init, log_trans, loglik, torch.tensor([6, 1, 1]))


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="method"):
        inference.forward_filter(torch.zeros(2), torch.zeros(2, 2), torch.zeros(1, 3, 2),
                                 method="magic")


def test_bf16_products_accuracy():
    """Documented accuracy of ``matmul_dtype=torch.bfloat16``: log-likelihood within 1e-3
    relative and posteriors within 0.02 absolute of float32, K=64."""
    log_init, log_trans = random_model(64, seed=8, dtype=torch.float32)
    g = torch.Generator().manual_seed(9)
    loglik = torch.randn(8, 40, 64, generator=g) * 2
    ref = inference.forward_backward(log_init, log_trans, loglik)
    low = inference.forward_backward(log_init, log_trans, loglik, matmul_dtype=torch.bfloat16)
    torch.testing.assert_close(low.log_likelihood, ref.log_likelihood, rtol=1e-3, atol=0)
    torch.testing.assert_close(low.smoothed, ref.smoothed, rtol=0, atol=0.02)
    torch.testing.assert_close(low.transitions, ref.transitions, rtol=0.02, atol=0.05)
    with pytest.raises(ValueError, match="matmul_dtype"):
        inference.forward_filter(log_init, log_trans, loglik, matmul_dtype=torch.int8)
    with pytest.raises(ValueError, match="blocked"):
        inference.forward_filter(log_init, log_trans, loglik, method="blocked",
                                 matmul_dtype=torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["sequential", "blocked"])
def test_cuda_matches_cpu(method):
    log_init, log_trans, loglik, lengths = _problem(k=4, t=300, b=3)
    cpu = inference.forward_backward(log_init, log_trans, loglik, lengths, method=method)
    gpu = inference.forward_backward(log_init.cuda(), log_trans.cuda(), loglik.cuda(),
                                     lengths.cuda(), method=method)
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(b.cpu(), a)
    vit = inference.viterbi(log_init.cuda(), log_trans.cuda(), loglik.cuda(), lengths.cuda())
    torch.testing.assert_close(vit.path.cpu(),
                               inference.viterbi(log_init, log_trans, loglik, lengths).path)

"""Distillation of an HMM from a language model (tiny LM: fast)."""

import itertools
import math

import pytest
import torch

from seqprob.hmm.distill import Samples, count_init, distill, sample
from seqprob.lm import tiny_lm


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


SMALL = dict(seq_len=16, batch_size=16, n_init_batches=2, n_held_out=16, verbose=False)


def test_count_init_matches_direct_count():
    labels = torch.tensor([[0, 1, 1, 0], [1, 0, 2, 2]])
    tokens = torch.tensor([[3, 4, 4, -1], [0, 3, 1, 2]])
    lengths = torch.tensor([3, 4])
    c = 0.5
    log_s, log_t, log_e = count_init(labels, tokens, lengths, 3, 5, pseudocount=c)
    start = torch.full((3,), c)
    trans = torch.full((3, 3), c)
    emit = torch.full((3, 5), c)
    for b in range(2):
        start[labels[b, 0]] += 1
        for t in range(int(lengths[b])):
            emit[labels[b, t], tokens[b, t]] += 1
            if t:
                trans[labels[b, t - 1], labels[b, t]] += 1
    for got, want in ((log_s, start), (log_t, trans), (log_e, emit)):
        torch.testing.assert_close(got.exp(), (want / want.sum(-1, keepdim=True)).float())


def test_sample_masks_after_eos_and_matches_lm(lm):
    s = sample(lm, 4, 8, keep_hidden=True, random_state=1)
    assert s.tokens.shape == (4, 8) and s.hidden.shape == (4, 8, lm.hidden_size)
    for row, n in zip(s.tokens, s.lengths, strict=True):
        assert bool((row[:n] >= 0).all()) and bool((row[n:] == -1).all())
    # the hidden states are the LM's own on the sampled sequence (KV cache == full run)
    ids = torch.cat([torch.full((4, 1), lm.tokenizer.bos_token_id), s.tokens.clamp_min(0)], 1)
    full = lm.run(input_ids=ids).hidden[:, 1:]
    valid = s.tokens >= 0
    torch.testing.assert_close(full[valid].float(), s.hidden[valid], atol=1e-4, rtol=1e-4)


def test_em_improves_and_beats_unigram(lm):
    r = distill(lm, 8, n_em_steps=5, random_state=0, **SMALL)
    assert r.held_out["hmm"] > r.held_out["initial_hmm"]
    assert r.held_out["hmm"] > r.held_out["unigram"]
    assert r.hmm.emission.n_symbols == lm.vocab_size
    assert all(math.isfinite(v) for v in r.held_out.values())


def test_resume_equals_uninterrupted(lm, tmp_path):
    whole = distill(lm, 4, n_em_steps=4, random_state=3, **SMALL)
    path = tmp_path / "ckpt.safetensors"
    distill(lm, 4, n_em_steps=2, checkpoint=path, checkpoint_every=1, random_state=3, **SMALL)
    resumed = distill(lm, 4, n_em_steps=4, checkpoint=path, random_state=3, **SMALL)
    torch.testing.assert_close(resumed.hmm.emission.log_emission, whole.hmm.emission.log_emission)
    torch.testing.assert_close(resumed.hmm.log_transmat, whole.hmm.log_transmat)
    assert resumed.history == pytest.approx(whole.history)
    with pytest.raises(ValueError, match="other settings"):
        distill(lm, 4, n_em_steps=4, checkpoint=path, random_state=4, **SMALL)


def test_minibatch_updates_resume_and_improve(lm, tmp_path):
    opts = dict(SMALL, updates_per_batch=4, random_state=5)
    whole = distill(lm, 4, n_em_steps=3, **opts)
    assert whole.held_out["hmm"] > whole.held_out["initial_hmm"]
    path = tmp_path / "ckpt.safetensors"
    distill(lm, 4, n_em_steps=1, checkpoint=path, checkpoint_every=1, **opts)
    resumed = distill(lm, 4, n_em_steps=3, checkpoint=path, **opts)
    torch.testing.assert_close(resumed.hmm.emission.log_emission, whole.hmm.emission.log_emission)


def test_sample_under_bf16_autocast(lm):
    s = sample(lm, 3, 5, keep_hidden=True, autocast_dtype="bfloat16", random_state=2)
    assert s.hidden.dtype == torch.float32 and s.hidden.shape == (3, 5, lm.hidden_size)
    assert bool(((s.tokens >= -1) & (s.tokens < lm.vocab_size)).all())


def test_bad_input(lm):
    with pytest.raises(TypeError, match="lm"):
        distill("gpt", 4)
    with pytest.raises(ValueError, match="n_hidden"):
        distill(lm, 0)
    with pytest.raises(ValueError, match="n_hidden"):
        distill(lm, 100, seq_len=4, batch_size=2, n_init_batches=1, verbose=False)
    with pytest.raises(ValueError, match="pseudocount"):
        distill(lm, 4, pseudocount=0.0)
    with pytest.raises(ValueError, match="updates_per_batch"):
        distill(lm, 4, batch_size=4, updates_per_batch=5)
    with pytest.raises(ValueError, match="autocast_dtype"):
        distill(lm, 4, autocast_dtype="int8")


def test_ngram_baseline_is_normalized():
    from seqprob.hmm.distill import NgramBaseline

    base = NgramBaseline(3, 0.5)
    base.add(Samples(torch.tensor([[0, 1, 2, 1]]), torch.tensor([4]), None))
    # per-token log-likelihood of every length-1 and length-2 sequence sums to one
    total = 0.0
    for a in range(3):
        for b in range(3):
            _, bi = base.log_likelihoods(Samples(torch.tensor([[a, b]]), torch.tensor([2]), None))
            total += math.exp(2 * bi)
    assert total == pytest.approx(1.0)


def test_sparse_bigram_matches_a_dense_count():
    from seqprob.hmm.distill import NgramBaseline

    g = torch.Generator().manual_seed(0)
    v, c = 5, 0.3
    train = [torch.randint(0, v, (3, 6), generator=g) for _ in range(2)]
    base = NgramBaseline(v, c)
    for t in train:
        base.add(Samples(t, torch.full((3,), 6), None))
    tokens = torch.cat(train)
    uni = torch.bincount(tokens.reshape(-1), minlength=v).double()
    bi = torch.zeros(v, v, dtype=torch.float64)
    for row in tokens.tolist():
        for a, b in itertools.pairwise(row):
            bi[a, b] += 1
    p_uni = (uni + c) / (uni.sum() + c * v)
    p_bi = (bi + c * v * p_uni) / (bi.sum(1, keepdim=True) + c * v)
    test = torch.randint(0, v, (2, 4), generator=g)
    want = sum(math.log(p_uni[r[0]]) + sum(math.log(p_bi[a, b]) for a, b in itertools.pairwise(r))
               for r in test.tolist()) / 8
    _, got = base.log_likelihoods(Samples(test, torch.full((2,), 4), None))
    assert got == pytest.approx(want)

"""Distillation of an HMM from a language model (tiny LM: fast)."""

import importlib
import itertools
import math

import pytest
import torch

from seqprob.hmm.distill import count_init, distill, repeat_last
from seqprob.lm import instructions, tiny_lm


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


SMALL = dict(seq_len=16, batch_size=16, n_init_batches=2, n_held_out=16, verbose=False)


def test_count_init_matches_direct_count():
    labels = torch.tensor([[0, 1, 1, 0], [1, 0, 2, 2]])
    tokens = torch.tensor([[3, 4, 4, 4], [0, 3, 1, 2]])
    c = 0.5
    log_s, log_t, log_e = count_init(labels, tokens, 3, 5, pseudocount=c)
    start = torch.full((3,), c)
    trans = torch.full((3, 3), c)
    emit = torch.full((3, 5), c)
    for b in range(2):
        start[labels[b, 0]] += 1
        for t in range(4):
            emit[labels[b, t], tokens[b, t]] += 1
            if t:
                trans[labels[b, t - 1], labels[b, t]] += 1
    for got, want in ((log_s, start), (log_t, trans), (log_e, emit)):
        torch.testing.assert_close(got.exp(), (want / want.sum(-1, keepdim=True)).float())


def test_repeat_last_pads_with_the_ending_token():
    x = torch.tensor([[5, 7, 2, 0, 0], [1, 2, 3, 4, 5]])
    got = repeat_last(x, torch.tensor([3, 5]))
    assert got.tolist() == [[5, 7, 2, 2, 2], [1, 2, 3, 4, 5]]


@pytest.fixture(scope="module")
def eos_lm():
    """The tiny LM with a frequent token (id 82) as its EOS, so many samples end early."""
    lm = tiny_lm(random_state=0)
    lm.model.generation_config.eos_token_id = 82
    return lm


@pytest.fixture(scope="module")
def eos_result(eos_lm):
    return distill(eos_lm, 8, seq_len=16, batch_size=32, n_init_batches=2, n_em_steps=3,
                   n_held_out=32, verbose=False)


def test_an_ended_sequence_stays_ended(eos_result):
    x, hmm = eos_result.held_out_tokens, eos_result.hmm
    assert eos_result.ended > 0.1
    ended = x == 82                         # end-padded: every EOS position is after the end
    assert bool((ended[:, 1:] | ~ended[:, :-1]).all())      # EOS is followed by EOS only
    with torch.no_grad():
        log_filter, _ = hmm(x)                                                   # (B T K)
        emit_eos = hmm.emission.log_emission.exp()[:, 82]                        # (K)
        p_eos = (log_filter.exp() @ hmm.log_transmat.exp()) @ emit_eos           # (B T)
    after, before = p_eos[:, :-1][ended[:, :-1]].mean(), p_eos[:, :-1][~ended[:, :-1]].mean()
    # the HMM learned the absorbing end: once ended, EOS is far more likely than before
    assert float(after) > 0.4 and float(after) > 4 * float(before)


def test_constrained_decoding_can_finish_with_eos(eos_lm, eos_result):
    from seqprob.control import generate

    out = generate(eos_lm, list("abcdefghijkl"), eos_result.hmm, keywords=[["dog"]] * 12,
                   max_new_tokens=40, do_sample=True, random_state=0)
    assert out.satisfied == [True] * 12
    finished = [ids for ids in out.token_ids if len(ids) < 40]
    assert len(finished) >= 2 and all(ids[-1] == 82 for ids in finished)


def test_prompts_go_through_the_chat_template(monkeypatch):
    module = importlib.import_module("seqprob.hmm.distill")  # the name seqprob.hmm.distill is the function

    lm = tiny_lm(random_state=0)
    lm.tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
                                  "{% endfor %}{% if add_generation_prompt %}<|a|>{% endif %}")
    seen, real = [], module.sample

    def spy(lm_, prompts, *args, **kwargs):
        seen.extend(prompts)
        return real(lm_, prompts, *args, **kwargs)

    monkeypatch.setattr(module, "sample", spy)
    tiny = dict(seq_len=4, batch_size=8, n_init_batches=1, n_em_steps=0, n_held_out=4,
                verbose=False)
    distill(lm, 2, **tiny)
    texts = set(instructions())
    assert len(seen) == 12 and len(set(seen)) > 6          # prompts drawn from the set
    for prompt in seen:
        assert prompt.startswith("<|user|>") and prompt.endswith("<|a|>")
        assert prompt[len("<|user|>"):-len("<|a|>")] in texts
    seen.clear()
    distill(lm, 2, chat=False, prompts=["Say hi.", "Count."], **tiny)
    assert set(seen) == {"Say hi.", "Count."}


def test_a_shared_sample_cache_samples_once(lm, monkeypatch):
    module = importlib.import_module("seqprob.hmm.distill")  # the name seqprob.hmm.distill is the function

    opts = dict(SMALL, n_em_steps=2, random_state=4)
    plain = distill(lm, 4, **opts)
    cache, calls, real = {}, [], module.sample

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "sample", counting)
    first = distill(lm, 4, sample_cache=cache, **opts)
    n = len(calls)
    other_k = distill(lm, 6, sample_cache=cache, **opts)
    assert n == 1 + 2 + 2 and len(calls) == n               # held-out, init, EM: drawn once
    torch.testing.assert_close(first.hmm.log_transmat, plain.hmm.log_transmat)
    assert other_k.hmm.n_states == 6
    assert torch.equal(other_k.held_out_tokens, plain.held_out_tokens)


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


def test_bad_input(lm):
    with pytest.raises(TypeError, match="lm"):
        distill("gpt", 4)
    with pytest.raises(ValueError, match="n_states"):
        distill(lm, 0)
    with pytest.raises(ValueError, match="n_states"):
        distill(lm, 100, seq_len=4, batch_size=2, n_init_batches=1, verbose=False)
    with pytest.raises(ValueError, match="prompts"):
        distill(lm, 4, prompts=["ok", ""])
    with pytest.raises(ValueError, match="pseudocount"):
        distill(lm, 4, pseudocount=0.0)
    with pytest.raises(ValueError, match="updates_per_batch"):
        distill(lm, 4, batch_size=4, updates_per_batch=5)
    with pytest.raises(ValueError, match="autocast_dtype"):
        distill(lm, 4, autocast_dtype="int8")


def test_ngram_baseline_is_normalized():
    from seqprob.hmm.distill import NgramBaseline

    base = NgramBaseline(3, 0.5)
    base.add(torch.tensor([[0, 1, 2, 1]]))
    # per-token log-likelihood of every length-1 and length-2 sequence sums to one
    total = 0.0
    for a in range(3):
        for b in range(3):
            _, bi = base.log_likelihoods(torch.tensor([[a, b]]))
            total += math.exp(2 * bi)
    assert total == pytest.approx(1.0)


def test_sparse_bigram_matches_a_dense_count():
    from seqprob.hmm.distill import NgramBaseline

    g = torch.Generator().manual_seed(0)
    v, c = 5, 0.3
    train = [torch.randint(0, v, (3, 6), generator=g) for _ in range(2)]
    base = NgramBaseline(v, c)
    for t in train:
        base.add(t)
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
    _, got = base.log_likelihoods(test)
    assert got == pytest.approx(want)

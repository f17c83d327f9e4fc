"""TRACE: expected attribute probability against brute-force enumeration, the Lasso fit
against known weights, teachers, and steering in a decoding simulation."""

import itertools

import numpy as np
import pytest
import torch

from seqprob.control.hmm_tables import hmm_tables
from seqprob.control.trace import (
    AttributeProcessor,
    TokenAttribute,
    fit_attribute,
    fit_from_texts,
    nontoxic_teacher,
    positive_teacher,
    sharpen,
)
from tests.control_helpers import byte_level_tokenizer, random_hmm_logits


def sequence_prob(tables, seq):
    a = tables.initial * tables.emission[:, seq[0]]
    for x in seq[1:]:
        a = (a @ tables.transition) * tables.emission[:, x]
    return float(a.sum())


@pytest.mark.parametrize("prompt", [(), (2, 4, 4)])
def test_eap_equals_brute_force_enumeration(prompt):
    """The attribute scores the new tokens only; the HMM reads the prompt first."""
    k, v, budget = 3, 5, 4
    tables = hmm_tables(*random_hmm_logits(k, v, 11))
    gen = torch.Generator().manual_seed(0)
    attribute = TokenAttribute(-torch.rand(v, generator=gen, dtype=torch.float64) * 2)
    proc = AttributeProcessor(tables, attribute, max_new_tokens=budget)
    joint = {s: sequence_prob(tables, [*prompt, *s])
             for s in itertools.product(range(v), repeat=budget)}

    def brute(prefix):
        rows = [s for s in joint if s[:len(prefix)] == prefix]
        return (sum(joint[s] * np.exp(attribute.log_prob(s)) for s in rows)
                / sum(joint[s] for s in rows))

    for length in range(budget):
        for prefix in itertools.product(range(v), repeat=length):
            state = proc.init_state(torch.tensor([[-1, *prompt]]), budget)
            for x in prefix:
                state = proc.advance(state, torch.tensor([x]))
            got = proc.log_eap(state)[0].exp()
            want = torch.tensor([brute((*prefix, x)) for x in range(v)], dtype=got.dtype)
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
            assert bool((got <= 1).all())
            torch.testing.assert_close((state.prior[0] @ tables.emission) @ got,
                                       torch.tensor(brute(prefix), dtype=got.dtype))


def test_bfloat16_product_is_close():
    tables = hmm_tables(*random_hmm_logits(8, 40, 4, dtype=torch.float32))
    attribute = TokenAttribute(-torch.rand(40, generator=torch.Generator().manual_seed(1)))
    exact = AttributeProcessor(tables, attribute, max_new_tokens=6)
    fast = AttributeProcessor(tables, attribute, max_new_tokens=6, matmul_dtype=torch.bfloat16)
    prompt = torch.zeros(2, 1, dtype=torch.int64)
    a, b = exact.init_state(prompt, 6), fast.init_state(prompt, 6)
    a, b = exact.advance(a, torch.tensor([3, 7])), fast.advance(b, torch.tensor([3, 7]))
    torch.testing.assert_close(fast.log_eap(b), exact.log_eap(a), rtol=0, atol=0.03)


def test_table_does_not_underflow_for_long_budgets():
    tables = hmm_tables(*random_hmm_logits(4, 6, 1, dtype=torch.float32))
    attribute = TokenAttribute(torch.full((6,), -5.0))  # every token costs e^-5
    proc = AttributeProcessor(tables, attribute, max_new_tokens=100)
    state = proc.init_state(torch.zeros(1, 1, dtype=torch.int64), 100)
    log_eap = proc.log_eap(state)
    torch.testing.assert_close(log_eap, torch.full_like(log_eap, -500.0), rtol=1e-5, atol=1e-3)


def test_lasso_recovers_known_weights():
    rng = np.random.default_rng(0)
    vocab = 30
    true = np.zeros(vocab)
    true[[3, 7, 12]] = [-1.0, -0.5, -2.0]
    seqs = [rng.integers(0, vocab, rng.integers(3, 12)).tolist() for _ in range(600)]
    scores = np.exp([true[s].sum() for s in seqs])
    attribute = fit_attribute(seqs, scores, vocab, alpha=1e-5)
    np.testing.assert_allclose(attribute.weights.numpy(), true, atol=0.03)
    assert bool((attribute.weights <= 0).all())


def test_composite_attributes_multiply():
    a = TokenAttribute(torch.tensor([0.0, -1.0, -0.5]), "a")
    b = TokenAttribute(torch.tensor([-0.2, 0.0, -0.1]), "b")
    both = a * b
    seq = [0, 1, 2, 2]
    assert both.log_prob(seq) == pytest.approx(a.log_prob(seq) + b.log_prob(seq))
    assert both.name == "a*b"


def test_teachers_rank_texts():
    nice, rude = "a nice walk in the park", "you are a stupid idiot"
    assert nontoxic_teacher([nice])[0] > 0.5 > nontoxic_teacher([rude])[0]
    happy, sad = "what a wonderful happy day", "a terrible awful sad day"
    assert positive_teacher([happy])[0] > 0.5 > positive_teacher([sad])[0]


def test_fit_from_texts_learns_the_teacher():
    tokenizer = byte_level_tokenizer()
    rng = np.random.default_rng(1)
    filler = ["the dog", "a walk", "in the park", "with a ball", "on the sidewalk"]
    moods = ["terrible", "awful", "wonderful", "great"]
    texts = [" ".join(rng.choice(filler, 2)) + " " + rng.choice(moods) + " " +
             rng.choice(filler) for _ in range(300)]
    attribute = fit_from_texts(texts, tokenizer, positive_teacher, name="positive",
                               alpha=1e-4)
    def word_weight(word):
        return attribute.log_prob(tokenizer.encode(word))

    # The words share sub-word tokens ("awful", "wonderful"), so only the ranking is exact.
    assert max(word_weight(" terrible"), word_weight(" awful")) < min(
        word_weight(" wonderful"), word_weight(" great"))
    assert word_weight(" terrible") < -0.5


def test_lexicon_weights_words_the_texts_never_show():
    tokenizer = byte_level_tokenizer()

    def no_dog(texts):  # teacher: texts mentioning a dog score 0.1
        return np.array([0.1 if "dog" in t.lower() else 1.0 for t in texts])

    texts = ["a cat watched the ball", "she caught it"] * 5
    plain = fit_from_texts(texts, tokenizer, no_dog)
    lex = fit_from_texts(texts, tokenizer, no_dog, lexicon=True)
    dog = [i for i in range(len(tokenizer)) if "dog" in tokenizer.decode([i]).lower()]
    assert dog and bool((plain.weights == 0).all())
    assert bool((lex.weights[dog] < -1.0).all())
    others = torch.ones(len(tokenizer), dtype=torch.bool)
    others[dog] = False
    assert bool((lex.weights[others] == 0).all())


def test_steering_raises_the_attribute():
    v, budget = 12, 8
    tables = hmm_tables(*random_hmm_logits(4, v, 5, dtype=torch.float32))
    weights = torch.zeros(v)
    weights[:4] = -3.0  # tokens 0-3 are "toxic"
    attribute = TokenAttribute(weights)
    lm = torch.log_softmax(torch.randn(v, v, generator=torch.Generator().manual_seed(2)), -1)

    def mean_log_attribute(strength):
        proc = AttributeProcessor(tables, attribute, max_new_tokens=budget, strength=strength)
        gen = torch.Generator().manual_seed(3)
        state = proc.init_state(torch.zeros(64, 1, dtype=torch.int64), budget)
        last, total = torch.zeros(64, dtype=torch.int64), torch.zeros(64)
        for _ in range(budget):
            scores = torch.log_softmax(proc.process(lm[last], state), -1)
            last = torch.multinomial(scores.exp(), 1, generator=gen).squeeze(1)
            total += weights[last]
            state = proc.advance(state, last)
        return float(total.mean())

    assert mean_log_attribute(0.0) < mean_log_attribute(1.0) < mean_log_attribute(4.0)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: TokenAttribute(torch.tensor([0.0, 0.5])), ValueError, "weights: expected finite"),
    (lambda: TokenAttribute(torch.zeros(2, 2)), ValueError, "weights: expected 1 dimensions"),
    (lambda: fit_attribute([[0, 1]], [1.5], 3), ValueError, "scores: expected probabilities"),
    (lambda: fit_attribute([[0, 5]], [0.5], 3), ValueError, r"token_ids: expected ids in \[0, 3\)"),
    (lambda: fit_attribute([[0, 1]], [0.5, 0.2], 3), ValueError, "scores: expected one score"),
    (lambda: fit_attribute([[0]], [0.5], 3, alpha=0.0), ValueError, "alpha: expected a value"),
    (lambda: TokenAttribute(torch.zeros(3)) * TokenAttribute(torch.zeros(4)), ValueError,
     "other: expected a TokenAttribute over 3 tokens"),
])
def test_bad_attribute_input(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_processor_input():
    tables = hmm_tables(*random_hmm_logits(3, 5, 0))
    with pytest.raises(ValueError, match="vocabulary of 6 tokens, got 5"):
        AttributeProcessor(tables, TokenAttribute(torch.zeros(6)), max_new_tokens=4)
    with pytest.raises(ValueError, match="strength: expected a value in"):
        AttributeProcessor(tables, TokenAttribute(torch.zeros(5)), max_new_tokens=4,
                           strength=-1.0)
    proc = AttributeProcessor(tables, TokenAttribute(torch.zeros(5)), max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens: expected an integer <= 4"):
        proc.init_state(torch.zeros(1, 1, dtype=torch.int64), 5)
    state = proc.init_state(torch.zeros(2, 1, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match=r"log_probs: expected shape \(2, 5\)"):
        proc.process(torch.zeros(2, 7), state)


def test_trace_rule_is_sigmoid_of_scaled_log_odds():
    """rule="trace": p_LM · sigmoid(a · logit(EAP)); equal to the power rule at a = 1."""
    tables = hmm_tables(*random_hmm_logits(3, 6, 2))
    attribute = TokenAttribute(-torch.rand(6, generator=torch.Generator().manual_seed(0),
                                           dtype=torch.float64) * 2)
    lp = torch.log_softmax(torch.randn(2, 6, dtype=torch.float64), -1)
    prompt = torch.tensor([[-1, 3], [2, 5]])
    for strength in (0.0, 1.0, 3.5):
        trace = AttributeProcessor(tables, attribute, max_new_tokens=4, strength=strength)
        power = AttributeProcessor(tables, attribute, max_new_tokens=4, strength=strength,
                                   rule="power")
        state = trace.advance(trace.init_state(prompt, 4), torch.tensor([1, 4]))
        eap = trace.log_eap(state).exp()
        want = lp + torch.log(torch.sigmoid(strength * torch.log(eap / (1 - eap))))
        got = torch.log_softmax(trace.process(lp, state), -1)  # the loop renormalizes
        torch.testing.assert_close(got, torch.log_softmax(want, -1))
        if strength == 1.0:
            torch.testing.assert_close(got, torch.log_softmax(power.process(lp, state), -1))
    with pytest.raises(ValueError, match="rule"):
        AttributeProcessor(tables, attribute, max_new_tokens=4, rule="softmax")


def test_target_transform_is_traces_sharpening():
    scores = np.array([0.5, 0.9, 0.95, 0.99, 1.0, 0.0])
    got = sharpen(scores, 10.0, 3.0)
    logit = np.log(scores[:4] / (1 - scores[:4]))
    np.testing.assert_allclose(got[:4], 1 / (1 + np.exp(-10 * (logit - 3))))
    assert got[4] == 1.0 and got[5] == 0.0
    ids = [[0, 1], [2], [1, 1, 3], [4]]
    plain = fit_attribute(ids, scores[:4], 5)
    sharp = fit_attribute(ids, scores[:4], 5, target_transform=(10.0, 3.0))
    assert float(sharp.weights.sum()) < float(plain.weights.sum())  # low scores sink further
    with pytest.raises(ValueError, match="b"):
        fit_attribute(ids, scores[:4], 5, target_transform=(0.0, 3.0))


def test_default_attribute_shows_sampling_progress_and_is_cached(tmp_path, monkeypatch, capsys):
    from seqprob.control.defaults import default_attribute
    from seqprob.lm import tiny_lm

    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path))
    lm = tiny_lm(random_state=0)
    first = default_attribute(lm, "positive", n_texts=4, length=6, verbose=True)
    err = capsys.readouterr().err
    assert "sample:" in err and "/6 [" in err          # the sampling bar: tokens done, time, ETA
    assert len(list(tmp_path.glob("attribute-*.safetensors"))) == 1
    again = default_attribute(lm, "positive", n_texts=4, length=6, verbose=True)
    assert "sample:" not in capsys.readouterr().err    # read from the cache: nothing sampled
    torch.testing.assert_close(again.weights, first.weights)
    assert first.weights.shape == (lm.vocab_size,) and bool((first.weights <= 0).all())

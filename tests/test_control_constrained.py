"""HMM-guided constrained decoding: the conditional against brute-force enumeration of every
continuation, and 100% satisfaction under greedy, sampling and beam search."""

import itertools

import numpy as np
import pytest
import torch

from seqprob.control.constrained import ConstraintProcessor, DFAMask, backward_table
from seqprob.control.hmm_tables import hmm_predict, hmm_tables
from seqprob.control.tokens import compile_keywords, compile_tokens, token_bytes
from seqprob.control.words import (
    ByteDFA,
    banned,
    contains,
    ends_with,
    keyword,
    to_bytes,
    word_count,
    words_of,
)
from tests.control_helpers import byte_level_tokenizer, random_hmm_logits

TOKENS = [b"", b" dog", b"s", b" cat", b" do", b"g", b","]  # token 0 is EOS
EOS = 0


def tiny_problem(word_dfa, seed=0, k=3):
    byte_dfa = word_dfa if isinstance(word_dfa, ByteDFA) else to_bytes(word_dfa)
    token_dfa = compile_tokens(byte_dfa, TOKENS, eos_token_id=EOS)
    return hmm_tables(*random_hmm_logits(k, len(TOKENS), seed)), token_dfa


def sequence_prob(tables, seq):
    """Joint HMM probability of a token sequence (matrix product over hidden paths)."""
    a = tables.initial * tables.emission[:, seq[0]]
    for x in seq[1:]:
        a = (a @ tables.transition) * tables.emission[:, x]
    return float(a.sum())


def accepted(check, seq):
    cut = seq[:seq.index(EOS)] if EOS in seq else seq
    return check(b"".join(TOKENS[i] for i in cut).decode())


@pytest.mark.parametrize("prompt", [(), (3, 6)])  # none, or " cat," read by the HMM first
@pytest.mark.parametrize(("word_dfa", "oracle"), [
    (keyword("dog"), None), (contains("dog") & ~contains("cat"), None),
    (word_count(1, 2) | contains("cat"), None),
    (word_count(2, 3), lambda text: 2 <= len(text.replace(",", " ").split()) <= 3),
    (word_count(3), lambda text: len(text.replace(",", " ").split()) >= 3),
    (ends_with("g,"), lambda text: text.endswith("g,")),
    (ends_with("s"), lambda text: text.endswith("s"))])
def test_conditional_equals_brute_force_enumeration(word_dfa, oracle, prompt):
    """P(constraint | prompt, prefix, next token) against the joint HMM probability of every
    prompt + continuation; the prompt is left-padded with -1. Word counts and suffixes are
    judged by plain string tests (the other constraints by their word automata)."""
    tables, token_dfa = tiny_problem(word_dfa)
    check = word_dfa.accepts_text if oracle is None else oracle
    budget, v = 4, len(TOKENS)
    proc = ConstraintProcessor(tables, token_dfa, max_new_tokens=budget)
    joint = {seq: sequence_prob(tables, [*prompt, *seq])
             for seq in itertools.product(range(v), repeat=budget)}
    sat = {seq: accepted(check, list(seq)) for seq in joint}

    def brute(prefix):
        rows = [s for s in joint if s[:len(prefix)] == prefix]
        return sum(joint[s] for s in rows if sat[s]) / sum(joint[s] for s in rows)

    for length in range(budget):
        for prefix in itertools.product(range(v), repeat=length):
            state = proc.init_state(torch.tensor([[-1, -1, *prompt]]), budget)
            for x in prefix:
                state = proc.advance(state, torch.tensor([x]))
            got = proc.log_conditional(state)[0].exp()
            want = torch.tensor([brute((*prefix, x)) for x in range(v)], dtype=got.dtype)
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
            assert bool((got <= 1).all())
            # The conditional is a martingale: averaging over the HMM's next token gives
            # P(alpha | prefix).
            next_token = state.prior[0] @ tables.emission
            torch.testing.assert_close(next_token @ got, torch.tensor(brute(prefix),
                                                                     dtype=got.dtype))
    if not prompt:
        start = float(proc.table.start_log_prob[budget].exp())
        assert start == pytest.approx(brute(()), rel=1e-9)


@pytest.mark.parametrize("word_dfa", [banned("dog"), word_count(1, 2), ends_with("g,")])
def test_dfa_mask_allows_exactly_the_completable_tokens(word_dfa):
    """DFAMask (no HMM): a token is allowed iff some continuation within the budget is
    accepted, by enumeration of every continuation."""
    _, token_dfa = tiny_problem(word_dfa)
    budget, v = 3, len(TOKENS)
    mask = DFAMask(token_dfa, max_new_tokens=budget)
    ok = {s: accepted(word_dfa.accepts_text, list(s))
          for s in itertools.product(range(v), repeat=budget)}
    for length in range(budget):
        for prefix in itertools.product(range(v), repeat=length):
            state = mask.init_state(torch.zeros(1, 1, dtype=torch.int64), budget)
            for x in prefix:
                state = mask.advance(state, torch.tensor([x]))
            got = torch.isfinite(mask.process(torch.zeros(1, v), state))[0].tolist()
            want = [any(ok[s] for s in ok if s[:length + 1] == (*prefix, x)) for x in range(v)]
            if any(ok[s] for s in ok if s[:length] == prefix):  # a reachable prefix
                assert got == want, (prefix, got, want)


def test_prompts_set_the_prior_row_by_row():
    """Different prompts give different priors; a left-padded batch gives each row the prior
    of its prompt alone, which is the HMM filter over the prompt followed by one predict."""
    tables, token_dfa = tiny_problem(keyword("dog"))
    proc = ConstraintProcessor(tables, token_dfa, max_new_tokens=4)
    batch = proc.init_state(torch.tensor([[-1, -1, 3], [3, 6, 1], [-1, -1, -1]]), 4).prior
    for row, prompt in enumerate([[3], [3, 6, 1], []]):
        alone = proc.init_state(torch.tensor([prompt or [-1]]), 4).prior[0]
        torch.testing.assert_close(batch[row], alone)
        if prompt:
            a = tables.initial * tables.emission[:, prompt[0]]
            for x in prompt[1:]:
                a = (a @ tables.transition) * tables.emission[:, x]
            torch.testing.assert_close(alone, (a / a.sum()) @ tables.transition)
    torch.testing.assert_close(batch[2], tables.initial)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)
    with pytest.raises(ValueError, match=r"prompt_ids: expected ids in \[0, 7\) or -1"):
        proc.init_state(torch.tensor([[-2, 3]]), 4)


def test_scaled_table_survives_tiny_probabilities():
    """A long budget with a keyword the HMM almost never emits: no underflow to zero."""
    log_init, log_trans, log_emit = random_hmm_logits(3, len(TOKENS), 1)
    log_emit = log_emit.clone()
    log_emit[:, [1, 5]] -= 60.0  # " dog" and "g" are emitted with probability ~1e-27
    log_emit = torch.log_softmax(log_emit, -1)
    token_dfa = compile_tokens(to_bytes(contains("dog") & contains("cat") & contains("dogs")),
                               TOKENS, eos_token_id=EOS)
    table = backward_table(hmm_tables(log_init, log_trans, log_emit, dtype=torch.float32),
                           token_dfa, 40)
    exact = backward_table(hmm_tables(log_init, log_trans, log_emit), token_dfa, 40)
    assert float(table.start_log_prob[-1]) < -110  # below float32's smallest number
    torch.testing.assert_close(table.start_log_prob.double(), exact.start_log_prob, rtol=1e-4,
                               atol=1e-4)
    assert bool((table.values <= 1).all()) and bool((table.values >= 0).all())


def test_table_matches_float64_in_float32():
    log_params = random_hmm_logits(5, len(TOKENS), 2)
    token_dfa = compile_tokens(to_bytes(keyword("dog") & ~contains("cat")), TOKENS,
                               eos_token_id=EOS)
    t64 = backward_table(hmm_tables(*log_params), token_dfa, 12)
    t32 = backward_table(hmm_tables(*log_params, dtype=torch.float32), token_dfa, 12)
    torch.testing.assert_close(t32.start_log_prob.double(), t64.start_log_prob, rtol=1e-4,
                               atol=1e-5)
    t16 = backward_table(hmm_tables(*log_params, dtype=torch.float32), token_dfa, 12,
                         matmul_dtype=torch.bfloat16)
    torch.testing.assert_close(t16.start_log_prob.double(), t64.start_log_prob, rtol=2e-2,
                               atol=2e-2)
    assert torch.equal(t16.values > 0, t32.values > 0)  # the same tokens stay possible


# -- decoding simulations -----------------------------------------------------------------------

TOKENIZER = byte_level_tokenizer()
V = len(TOKENIZER)


def bigram_lm(seed):
    """A random "language model": next-token log-probabilities from the last token."""
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(V, V, generator=gen) * 3, -1)


def decode(lm, proc, *, batch, budget, strategy, seed=0, beams=3):
    eos = TOKENIZER.eos_token_id
    gen = torch.Generator().manual_seed(seed)
    rows = batch * (beams if strategy == "beam" else 1)
    last = torch.full((rows,), eos)
    out = torch.zeros(rows, 0, dtype=torch.int64)
    done = torch.zeros(rows, dtype=torch.bool)
    score = torch.zeros(rows)
    state = proc.init_state(torch.zeros(rows, 1, dtype=torch.int64), budget) if proc else None
    for _ in range(budget):
        log_probs = lm[last]
        if proc is not None:
            log_probs = proc.process(log_probs, state)
        log_probs = torch.log_softmax(log_probs, -1)
        log_probs[done] = float("-inf")
        log_probs[done, eos] = 0.0  # finished rows pad with EOS
        if strategy == "greedy":
            tokens = log_probs.argmax(-1)
        elif strategy == "sample":
            tokens = torch.multinomial(log_probs.exp(), 1, generator=gen).squeeze(1)
        else:
            total = (score[:, None] + log_probs).view(batch, -1)
            if out.shape[1] == 0:  # all beams start equal: expand the first one only
                total = total.view(batch, beams, V)[:, :1].reshape(batch, -1)
            best, flat = total.topk(beams, dim=-1)  # (batch, beams)
            origin = flat // V + torch.arange(batch)[:, None] * beams
            origin, tokens, score = origin.reshape(-1), flat.reshape(-1) % V, best.reshape(-1)
            out, done, last = out[origin], done[origin], last[origin]
            if state is not None:
                state = state.reorder(origin)
        if state is not None:
            state = proc.advance(state, tokens)
        out = torch.cat([out, tokens[:, None]], 1)
        done = done | (tokens == eos)
        last = tokens
    return out


def text_of(ids):
    ids = ids.tolist()
    eos = TOKENIZER.eos_token_id
    return TOKENIZER.decode(ids[:ids.index(eos)] if eos in ids else ids,
                            skip_special_tokens=True)


CONSTRAINT = keyword("dog") & keyword("throw") & banned("cat")


@pytest.fixture(scope="module")
def processor():
    token_dfa = compile_tokens(to_bytes(CONSTRAINT), token_bytes(TOKENIZER),
                               eos_token_id=TOKENIZER.eos_token_id)
    tables = hmm_tables(*random_hmm_logits(6, V, 3, dtype=torch.float32))
    return ConstraintProcessor(tables, token_dfa, max_new_tokens=10)


@pytest.mark.parametrize("strategy", ["greedy", "sample", "beam"])
def test_satisfiable_constraint_is_always_met(processor, strategy):
    lm = bigram_lm(4)
    out = decode(lm, processor, batch=6, budget=10, strategy=strategy, seed=5)
    texts = [text_of(row) for row in out]
    assert all(CONSTRAINT.accepts_text(t) for t in texts), texts
    # Without the processor the same "LM" does not meet it: the check above can fail.
    free = [text_of(row) for row in decode(lm, None, batch=6, budget=10, strategy=strategy)]
    assert not all(CONSTRAINT.accepts_text(t) for t in free)


def test_shorter_budget_than_the_table(processor):
    out = decode(bigram_lm(6), processor, batch=4, budget=4, strategy="sample", seed=1)
    assert all(CONSTRAINT.accepts_text(text_of(row)) for row in out)


def test_beam_state_reorders(processor):
    state = processor.init_state(torch.zeros(3, 1, dtype=torch.int64), 10)
    ids = TOKENIZER.encode(" dog")
    state = processor.advance(state, torch.tensor([ids[0], 5, 6]))
    moved = state.reorder(torch.tensor([2, 0, 0]))
    assert moved.dfa_state.tolist() == [state.dfa_state[2], state.dfa_state[0],
                                        state.dfa_state[0]]
    torch.testing.assert_close(moved.prior[1], state.prior[0])


def test_hmm_predict_is_the_forward_filter():
    tables = hmm_tables(*random_hmm_logits(4, 6, 7))
    prior = tables.initial[None]
    for x in [3, 1, 4]:
        prior = hmm_predict(tables, prior, torch.tensor([x]))
    alpha = tables.initial * tables.emission[:, 3]
    for x in [1, 4]:
        alpha = (alpha @ tables.transition) * tables.emission[:, x]
    torch.testing.assert_close(prior[0], (alpha / alpha.sum()) @ tables.transition)


# -- bad input ----------------------------------------------------------------------------------

def test_unsatisfiable_constraint_fails_before_decoding():
    tables, token_dfa = tiny_problem(contains("dog") & banned("dog"))
    with pytest.raises(ValueError, match="accepts no token sequence"):
        ConstraintProcessor(tables, token_dfa, max_new_tokens=5)


def test_budget_too_small():
    tables, token_dfa = tiny_problem(contains("dog") & contains("cat"))
    with pytest.raises(ValueError, match="needs at least 2 tokens, got a budget of 1"):
        ConstraintProcessor(tables, token_dfa, max_new_tokens=1)
    proc = ConstraintProcessor(tables, token_dfa, max_new_tokens=4)
    with pytest.raises(ValueError, match="max_new_tokens: expected an integer <= 4"):
        proc.init_state(torch.zeros(1, 1, dtype=torch.int64), 6)
    with pytest.raises(ValueError, match="needs at least 2 tokens"):
        proc.init_state(torch.zeros(1, 1, dtype=torch.int64), 1)


def test_vocabulary_mismatch():
    _, token_dfa = tiny_problem(keyword("dog"))
    other = hmm_tables(*random_hmm_logits(3, len(TOKENS) + 1, 0))
    with pytest.raises(ValueError, match="vocabulary of 7 tokens, got 8"):
        ConstraintProcessor(other, token_dfa, max_new_tokens=4)
    tables, _ = tiny_problem(keyword("dog"))
    proc = ConstraintProcessor(tables, token_dfa, max_new_tokens=4)
    state = proc.init_state(torch.zeros(2, 1, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match=r"log_probs: expected shape \(2, 7\)"):
        proc.process(torch.zeros(2, 9), state)


def test_constraint_the_hmm_cannot_emit():
    log_init, log_trans, log_emit = random_hmm_logits(3, len(TOKENS), 0)
    log_emit = log_emit.clone()
    log_emit[:, [1, 5]] = float("-inf")  # neither " dog" nor "g": "dog" cannot be spelled
    log_emit = torch.log_softmax(log_emit, -1)
    _, token_dfa = tiny_problem(keyword("dog"))
    with pytest.raises(ValueError, match="HMM gives the constraint probability 0"):
        ConstraintProcessor(hmm_tables(log_init, log_trans, log_emit), token_dfa,
                            max_new_tokens=4)


@pytest.mark.parametrize(("params", "match"), [
    (lambda p: (p[0][:2].log_softmax(-1), p[1], p[2]), "log_transition: expected shape"),
    (lambda p: (p[0], p[1] + 1.0, p[2]), "log_transition: expected rows that are distributions"),
    (lambda p: (p[0], p[1], p[2].clone().fill_(float("nan"))), "log_emission: expected log-prob"),
    (lambda p: (p[0].long(), p[1], p[2]), "log_initial: expected dtype"),
])
def test_bad_hmm_parameters(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        hmm_tables(*params(random_hmm_logits(3, 5, 0)))


def test_words_of_decoded_outputs_match_dfa_semantics():
    # The processor's notion of text is the tokenizer's decode; spot-check one sentence.
    ids = TOKENIZER.encode("The dog threw it")
    assert words_of(TOKENIZER.decode(ids)) == [b"the", b"dog", b"threw", b"it"]
    assert np.all(np.asarray(ids) < V)


@pytest.mark.slow
def test_commongen_keywords_with_smollm2_tokenizer():
    """A CommonGen concept set over SmolLM2's 49k-token vocabulary: every decoded output of a
    random "LM" contains every concept in some inflection, in both keyword modes."""
    from tests.test_control_tokens import smollm2_tokenizer

    tokenizer = smollm2_tokenizer()
    pieces = token_bytes(tokenizer)
    concepts = ["ball", "kid", "throw"]
    check = keyword("ball") & keyword("kid") & keyword("throw")
    hmm = hmm_tables(*random_hmm_logits(8, len(pieces), 0, dtype=torch.float32))
    gen = torch.Generator().manual_seed(0)
    for spell in (None, lambda s: [pieces[i] for i in tokenizer.encode(s)]):
        token_dfa = compile_keywords(concepts, pieces, eos_token_id=tokenizer.eos_token_id,
                                     spell=spell)
        proc = ConstraintProcessor(hmm, token_dfa, max_new_tokens=12)
        state = proc.init_state(torch.zeros(4, 1, dtype=torch.int64), 12)
        out = []
        for _ in range(12):
            logits = torch.randn(4, len(pieces), generator=gen) * 3
            scores = proc.process(torch.log_softmax(logits, -1), state)
            tokens = torch.multinomial(torch.softmax(scores, -1), 1, generator=gen).squeeze(1)
            state = proc.advance(state, tokens)
            out.append(tokens)
        for row in torch.stack(out, 1).tolist():
            cut = row[:row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
            text = tokenizer.decode(cut, skip_special_tokens=True)
            assert check.accepts_text(text), text


def test_bfloat16_product_keeps_the_allowed_set(processor):
    exact_state = processor.init_state(torch.zeros(3, 1, dtype=torch.int64), 10)
    fast = ConstraintProcessor(processor.hmm, processor.token_dfa, max_new_tokens=10,
                               matmul_dtype=torch.bfloat16)
    state = fast.init_state(torch.zeros(3, 1, dtype=torch.int64), 10)
    for token in TOKENIZER.encode(" the dog", add_special_tokens=False):
        tokens = torch.full((3,), token)
        exact_state, state = processor.advance(exact_state, tokens), fast.advance(state, tokens)
    want, got = processor.log_conditional(exact_state), fast.log_conditional(state)
    assert torch.equal(torch.isneginf(want), torch.isneginf(got))
    finite = torch.isfinite(want) & (want > -8)
    torch.testing.assert_close(got[finite], want[finite], rtol=0, atol=0.05)
    out = decode(bigram_lm(4), fast, batch=4, budget=10, strategy="greedy")
    assert all(CONSTRAINT.accepts_text(text_of(row)) for row in out)
    with pytest.raises(ValueError, match="matmul_dtype: expected one of"):
        ConstraintProcessor(processor.hmm, processor.token_dfa, max_new_tokens=10,
                            matmul_dtype=torch.float16)


def test_constraint_and_attribute_processors_compose(processor):
    """An attribute processor before the constraint cannot break the guarantee."""
    from seqprob.control.trace import AttributeProcessor, TokenAttribute

    weights = torch.zeros(V)
    weights[TOKENIZER.encode(" dog", add_special_tokens=False)] = -4.0  # steer away from "dog"
    attribute = AttributeProcessor(processor.hmm, TokenAttribute(weights), max_new_tokens=10,
                                   strength=3.0)

    class Both:
        def init_state(self, prompt_ids, max_new_tokens):
            return (attribute.init_state(prompt_ids, max_new_tokens),
                    processor.init_state(prompt_ids, max_new_tokens))

        def process(self, log_probs, states):
            steered = torch.log_softmax(attribute.process(log_probs, states[0]), -1)
            return processor.process(steered, states[1])

        def advance(self, states, tokens):
            return attribute.advance(states[0], tokens), processor.advance(states[1], tokens)

    both = Both()
    state = both.init_state(torch.zeros(4, 1, dtype=torch.int64), 10)
    lm, last, out = bigram_lm(8), torch.full((4,), TOKENIZER.eos_token_id), []
    gen = torch.Generator().manual_seed(9)
    for _ in range(10):
        scores = torch.log_softmax(both.process(lm[last], state), -1)
        last = torch.multinomial(scores.exp(), 1, generator=gen).squeeze(1)
        state = both.advance(state, last)
        out.append(last)
    assert all(CONSTRAINT.accepts_text(text_of(row)) for row in torch.stack(out, 1))

"""seqprob.control.generate: words in, constrained text out (tiny LM, tiny distilled HMM);
and seqprob.control.logits_processor inside transformers' model.generate: the same tokens as
seqprob's own loop under greedy decoding, the constraint met under sampling and beam search,
batched with left padding."""

import itertools

import pytest
import torch

from seqprob.control import TokenAttribute, generate, logits_processor
from seqprob.control.defaults import default_hmm, lm_fingerprint
from seqprob.control.words import inflections, keyword, word_count, words_of
from seqprob.hmm import HMM
from seqprob.hmm.distill import distill
from seqprob.lm import tiny_lm

TINY = dict(n_states=8, seq_len=16, batch_size=16, n_init_batches=2, n_em_steps=2,
            n_held_out=16)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


@pytest.fixture(scope="module")
def hmm(lm):
    return distill(lm, verbose=False, **TINY).hmm


def _present(text, word):
    lowered = text.lower()
    return any(form in lowered for form in inflections(word))


@pytest.mark.parametrize("decoding", [{}, {"do_sample": True, "random_state": 2},
                                      {"num_beams": 3}])
def test_every_keyword_appears(lm, hmm, decoding):
    prompts = ["The", "A", "So", "Then"]
    keywords = [["dog", "frisbee"], ["run"], ["dog", "frisbee"], ["sun", "hat", "red"]]
    out = generate(lm, prompts, hmm, keywords=keywords, avoid=["bad"], max_new_tokens=30,
                   **decoding)
    assert len(out.texts) == 4 and out.satisfied == [True] * 4
    for text, words, ids in zip(out.texts, keywords, out.token_ids, strict=True):
        assert all(_present(text, w) for w in words)   # the substring oracle agrees
        assert "bad" not in text.lower().split()
        assert len(ids) <= 30


def test_without_constraints_is_plain_decoding(lm, hmm):
    from seqprob.lm import generate as plain

    out = generate(lm, ["Hi"], hmm, max_new_tokens=8)
    ref = plain(lm, ["Hi"], 8, eos_token_id=lm.eos_token_ids)
    assert out.texts == ref.texts
    assert out.model_logprobs[0] == pytest.approx(ref.model_logprobs[0].tolist())
    assert out.satisfied == [None]


def test_bad_input_fails_before_decoding(lm, hmm):
    with pytest.raises(ValueError, match=r"keywords\[0\]: expected a non-empty list"):
        generate(lm, ["a"], hmm, keywords=[[]])
    with pytest.raises(ValueError, match="one list of words per prompt"):
        generate(lm, ["a", "b"], hmm, keywords=[["dog"]])
    with pytest.raises(ValueError, match="required but avoid bans"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], avoid=["dogs"])
    with pytest.raises(ValueError, match="word"):
        generate(lm, ["a"], hmm, keywords=[["!!"]])
    with pytest.raises(ValueError, match="max_new_tokens: the constraint needs at least"):
        generate(lm, ["a"], hmm, keywords=[["elephant"]], max_new_tokens=4)
    with pytest.raises(ValueError, match="vocabulary of 259 tokens, got one over 10"):
        generate(lm, ["a"], HMM(2, n_symbols=10), keywords=[["dog"]])
    with pytest.raises(TypeError, match="hmm"):
        generate(lm, ["a"], "hmm.safetensors", keywords=[["dog"]])


def test_default_hmm_is_distilled_once_and_cached(lm, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path))
    first = default_hmm(lm, verbose=False, **TINY)
    files = list(tmp_path.glob("hmm-*.safetensors"))
    assert len(files) == 1 and lm_fingerprint(lm) in files[0].name
    again = default_hmm(lm, verbose=False, **TINY)
    assert (again.emission.log_emission == first.emission.log_emission).all()
    other = tiny_lm(random_state=1)
    assert lm_fingerprint(other) != lm_fingerprint(lm)


def test_attribute_by_name(lm, hmm, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path))
    out = generate(lm, ["The"], hmm, keywords=[["dog"]], attributes="positive", strength=1.0,
                   max_new_tokens=20)
    assert out.satisfied == [True]
    assert len(list(tmp_path.glob("attribute-*.safetensors"))) == 1


@pytest.mark.slow
def test_smollm2_commongen_with_the_default_hmm():
    from seqprob.control.generation import concept_prompt
    from seqprob.lm import load

    smol = load("smollm2-135m")
    concepts = [["ball", "bunch", "kid", "throw"], ["bathroom", "clipper", "cut", "hair"]]
    out = generate(smol, [concept_prompt(smol, c) for c in concepts], keywords=concepts,
                   max_new_tokens=40)
    assert out.satisfied == [True, True]
    for text, words in zip(out.texts, concepts, strict=True):
        assert all(_present(text, w) for w in words)


@pytest.mark.parametrize(("flags", "want"), [("fpu avx2 avx512_bf16", "bfloat16"),
                                             ("fpu amx_bf16", "bfloat16"), ("fpu avx2", None)])
def test_fast_autocast_reads_the_cpu_flags(lm, monkeypatch, flags, want):
    from seqprob.core import device

    class FakePath:
        def __init__(self, path):
            assert path == "/proc/cpuinfo"

        def read_text(self, **_):
            return f"processor : 0\nflags : {flags}\n"

    monkeypatch.setattr(device, "Path", FakePath)
    assert device.fast_autocast_dtype(lm.device) == want


def test_word_counts_and_suffix_are_guaranteed(lm, hmm):
    prompts = ["The", "A"]
    out = generate(lm, prompts, hmm, min_words=2, max_words=4, suffix=" end.",
                   max_new_tokens=24, do_sample=True, random_state=3)
    assert out.satisfied == [True, True]
    for text in out.texts:   # plain string oracles
        assert text.endswith(" end.")
        assert 2 <= len(words_of(text)) <= 4, text
    with pytest.raises(ValueError, match="max_words: expected an integer >= 3"):
        generate(lm, prompts, hmm, min_words=3, max_words=2)
    with pytest.raises(ValueError, match="suffix: expected a non-empty string"):
        generate(lm, prompts, hmm, suffix="")


def test_avoid_bans_every_inflection(lm, hmm):
    # the tiny LM learned "Dogs" and "dog" from its corpus; avoiding "dog" bans both
    out = generate(lm, ["The", "Dogs are", "A"], hmm, keywords=[["frisbee"]] * 3,
                   avoid=["dog"], max_new_tokens=24, do_sample=True, random_state=5)
    assert out.satisfied == [True] * 3
    for text in out.texts:
        assert not {b"dog", b"dogs"} & set(words_of(text)), text
    with pytest.raises(ValueError, match="'dog' is required but avoid bans"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], avoid=["dog"])


@pytest.mark.parametrize("decoding", [{"do_sample": True, "random_state": 4},
                                      {"num_beams": 3}])
def test_one_sentence_is_guaranteed(lm, hmm, decoding):
    import re

    out = generate(lm, ["The", "A", "So"], hmm, keywords=[["dog", "frisbee"]] * 3,
                   one_sentence=True, max_new_tokens=30, **decoding)
    assert out.satisfied == [True] * 3
    for text in out.texts:   # a regular-expression oracle: one line, one final . ! or ?
        assert re.fullmatch(r"[^\n\r.!?]*[.!?]", text), text
    with pytest.raises(TypeError, match="one_sentence: expected a bool"):
        generate(lm, ["a"], hmm, one_sentence="yes")


# -- the same control inside transformers' model.generate (seqprob.control.logits_processor) --

PROMPTS = ["The", "A longer prompt"]  # different lengths: the first row is left-padded
BUDGET = 16


def hf_generate(lm, processor, **kwargs):
    from transformers import LogitsProcessorList

    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out = lm.model.generate(**enc, logits_processor=LogitsProcessorList([processor]),
                            max_new_tokens=BUDGET, pad_token_id=tok.pad_token_id,
                            eos_token_id=tok.eos_token_id, **kwargs)
    new = out[:, enc.input_ids.shape[1]:]
    rows = []
    for row in new.tolist():
        cut = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        rows.append(row[:cut])
    return rows


def test_greedy_gives_the_tokens_of_seqprobs_loop(lm, hmm):
    weights = -torch.rand(lm.vocab_size, generator=torch.Generator().manual_seed(0)) * 3
    attribute = TokenAttribute(weights)
    ours = generate(lm, PROMPTS, hmm, keywords=[["dog"]] * 2, attributes=attribute,
                    max_new_tokens=BUDGET)
    proc = logits_processor(lm, ["dog"], attributes=attribute, hmm=hmm, max_new_tokens=BUDGET)
    theirs = hf_generate(lm, proc, do_sample=False)
    eos = lm.tokenizer.eos_token_id
    assert theirs == [[t for t in row if t != eos] for row in ours.token_ids]
    assert ours.satisfied == [True, True]


@pytest.mark.parametrize("kwargs", [dict(do_sample=True, top_k=0),
                                    dict(num_beams=3, do_sample=False)])
def test_constraint_met_under_sampling_and_beam_search(lm, hmm, kwargs):
    proc = logits_processor(lm, ["dog", "sun"], hmm=hmm, max_new_tokens=BUDGET, max_words=6)
    for seed in range(2):
        torch.manual_seed(seed)
        for row in hf_generate(lm, proc, **kwargs):
            # special tokens spell nothing for the constraint (seqprob.control.tokens), and
            # text is read with them skipped, as seqprob's own loop decodes it
            text = lm.tokenizer.decode(row, skip_special_tokens=True)
            assert keyword("dog").accepts_text(text) and keyword("sun").accepts_text(text)
            assert word_count(0, 6).accepts_text(text), text


def test_nothing_to_control_is_refused(lm, hmm):
    with pytest.raises(ValueError, match="nothing to control"):
        logits_processor(lm, hmm=hmm)
    with pytest.raises(ValueError, match=r"keywords\[0\]: expected a non-empty list"):
        logits_processor(lm, [], hmm=hmm)


def test_no_repeat_ngram_keeps_the_guarantee(lm, hmm):
    prompts, keywords = ["The", "A", "So", "Then"] * 2, [["dog", "frisbee"]] * 8
    kwargs = dict(keywords=keywords, max_new_tokens=30, do_sample=True, random_state=3)
    out = generate(lm, prompts, hmm, no_repeat_ngram=2, **kwargs)
    assert out.satisfied == [True] * 8
    pairs = [len(set(itertools.pairwise(ids))) == len(ids) - 1 for ids in out.token_ids]
    assert all(pairs)  # here the constraint always left another way on
    with pytest.raises(ValueError, match="no_repeat_ngram: expected an integer >= 2"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], no_repeat_ngram=1)


def test_candidates_keep_the_most_likely_per_token(lm, hmm):
    prompts, keywords = ["The", "A"], [["dog", "frisbee"], ["sun"]]
    out = generate(lm, prompts, hmm, keywords=keywords, max_new_tokens=24, candidates=3,
                   random_state=5, one_sentence=True)
    pool = generate(lm, [p for p in prompts for _ in range(3)], hmm,
                    keywords=[k for k in keywords for _ in range(3)], max_new_tokens=24,
                    do_sample=True, random_state=5, one_sentence=True)
    assert out.satisfied == [True, True] and all(pool.satisfied)
    for i in range(2):
        means = [sum(lp) / len(lp) for lp in pool.model_logprobs[3 * i:3 * i + 3]]
        assert out.texts[i] == pool.texts[3 * i + means.index(max(means))]
    assert len(set(pool.texts[:3])) > 1  # the candidates differ, so the choice matters
    with pytest.raises(ValueError, match="candidates: expected 1 with beam search"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], candidates=2, num_beams=2)
    with pytest.raises(ValueError, match="candidates: expected an integer >= 1"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], candidates=0)

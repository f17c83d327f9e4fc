"""Word constraints against direct regular-expression checks on random texts, and their
byte-level compilation against the word-level automaton."""

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.control.words import (
    avoided,
    avoided_forms,
    banned,
    contains,
    inflections,
    keyword,
    one_sentence,
    ordered,
    to_bytes,
    word_count,
    words_of,
)

VOCAB = ["throw", "threw", "Thrown", "throwing", "throwe", "thro", "dog", "dogs", "DOG",
         "hotdog", "ice", "cream", "icecream", "cat", "café", "caf", "a", "the", "1", "µ"]
# ASCII and non-ASCII separators, and non-ASCII word characters that share their lead bytes
# (½ µ: C2, like the no-break space; ⁱ €: E2, like the dashes and quotes)
SEPS = [" ", ", ", ".", "'", "\n", "-", "  ", "é", "—", "–", "“", "”", "‘", "’", "…", "\xa0",
        "½", "ⁱ", "€", "\u2041", "\x85"]

texts = st.lists(st.tuples(st.sampled_from(VOCAB), st.sampled_from(SEPS)), max_size=9).map(
    lambda parts: "".join(w + s for w, s in parts))


def oracle_words(text):
    """The words of ``text`` character by character (the oracle): a word character is an ASCII
    letter or digit, or a non-ASCII character that Unicode does not class as punctuation,
    symbol, separator or control in Latin-1's U+0080-U+00BF, nor any character of General
    Punctuation U+2000-U+206F."""
    def is_word(c):
        if c.isascii():
            return c.isalnum()
        block = 0x80 <= ord(c) <= 0xBF or 0x2000 <= ord(c) <= 0x206F
        return not block or unicodedata.category(c)[0] in "LN"

    runs = "".join(c if is_word(c) else " " for c in text).split(" ")
    return [w.encode().lower() for w in runs if w]


def occurs(phrase, text):
    """A phrase's words occur as consecutive words of the text."""
    words, target = oracle_words(text), [w.encode().lower() for w in phrase.split()]
    return any(words[i:i + len(target)] == target for i in range(len(words)))


def in_order(phrases, text):
    words, i = oracle_words(text), 0
    for phrase in phrases:
        target = [w.encode().lower() for w in phrase.split()]
        while i + len(target) <= len(words) and words[i:i + len(target)] != target:
            i += 1
        if i + len(target) > len(words):
            return False
        i += len(target)
    return True


def count_words(text):
    return len(oracle_words(text))


@settings(max_examples=300, deadline=None)
@given(texts | st.text(max_size=30))
def test_words_of_matches_a_character_tokenizer(text):
    assert words_of(text) == oracle_words(text)


CASES = [
    (contains("throw"), lambda t: occurs("throw", t)),
    (keyword("throw"), lambda t: any(occurs(f, t) for f in ("throw", "throws", "threw",
                                                               "thrown", "throwing"))),
    (contains("ice cream", "café"), lambda t: occurs("ice cream", t) or occurs("café", t)),
    (banned("dog", "the cat"), lambda t: not (occurs("dog", t) or occurs("the cat", t))),
    (ordered("dog", "throw"), lambda t: in_order(["dog", "throw"], t)),
    (ordered("dog", "dog"), lambda t: in_order(["dog", "dog"], t)),
    (word_count(2, 4), lambda t: 2 <= count_words(t) <= 4),
    (word_count(3), lambda t: count_words(t) >= 3),
    (keyword("dog") & ~contains("cat") & word_count(maximum=6),
     lambda t: (occurs("dog", t) or occurs("dogs", t)) and not occurs("cat", t)
     and count_words(t) <= 6),
    (avoided("throw", "ice cream"),
     lambda t: not any(occurs(f, t) for f in ("throw", "throws", "threw", "thrown",
                                               "throwing", "ice cream"))),
    (contains("dog") | ordered("ice", "cream"),
     lambda t: occurs("dog", t) or in_order(["ice", "cream"], t)),
]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(CASES) - 1), texts)
def test_word_constraints_match_direct_checks(i, text):
    dfa, check = CASES[i]
    assert dfa.accepts_text(text) == check(text)


BYTES = [to_bytes(dfa) for dfa, _ in CASES]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, len(CASES) - 1), texts | st.text(max_size=30))
def test_byte_dfa_agrees_with_word_dfa(i, text):
    assert BYTES[i].accepts_text(text) == CASES[i][0].accepts_text(text)


@settings(max_examples=200, deadline=None)
@given(texts | st.text(alphabet="ab .!?\n\r", max_size=12))
def test_one_sentence_matches_a_regular_expression(text):
    oracle = re.fullmatch(r"[^\n\r.!?]*[.!?]", text) is not None
    assert one_sentence().accepts_text(text) == oracle
    assert one_sentence(";").accepts_text(text) == (
        re.fullmatch(r"[^\n\r;]*;", text) is not None)


def test_avoided_forms_inflect_single_words_only():
    assert {"dog", "dogs"} <= set(avoided_forms("dog"))
    assert "threw" in avoided_forms("throw", "ice cream")
    assert "ice cream" in avoided_forms("ice cream")
    assert "ice creams" not in avoided_forms("ice cream")


def test_words_definition():
    # Non-ASCII letters are word characters; non-ASCII punctuation such as the em dash is not.
    assert words_of("Dog's café ICE_cream 42! a—b “c”…d\xa0½") == [
        b"dog", b"s", "café".encode(), b"ice", b"cream", b"42", b"a", b"b", b"c", b"d",
        "½".encode()]


def test_inflections():
    assert {"throw", "throws", "threw", "thrown", "throwing"} <= set(inflections("throw"))
    assert "frisbees" in inflections("frisbee")  # not in lemminflect's lexicon
    assert "caught" in inflections("catch")


def test_not_not_and_de_morgan():
    a, b = keyword("dog"), contains("ice cream")
    for text in ["dog", "ice cream", "dogs ice cream", "cat", ""]:
        assert (~~a).accepts_text(text) == a.accepts_text(text)
        assert (~(a & b)).accepts_text(text) == (~a | ~b).accepts_text(text)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: contains(), ValueError, "alternatives: expected at least one phrase"),
    (lambda: contains("!!"), ValueError, "expected a phrase with at least one word"),
    (lambda: contains(3), TypeError, "alternatives: expected non-empty strings"),
    (lambda: ordered(), ValueError, "phrases: expected at least one phrase"),
    (lambda: word_count(3, 2), ValueError, "maximum: expected an integer >= 3"),
    (lambda: word_count(-1), ValueError, "minimum: expected an integer >= 0"),
    (lambda: inflections(""), ValueError, "word: expected a non-empty word"),
    (lambda: keyword("dog") & 3, TypeError, "other: expected a WordDFA"),
    (lambda: one_sentence(""), ValueError, "terminals: expected ASCII punctuation"),
    (lambda: one_sentence("a."), ValueError, "terminals: expected ASCII punctuation"),
    (lambda: avoided(), TypeError, "words: expected non-empty strings"),
])
def test_bad_constraints_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()

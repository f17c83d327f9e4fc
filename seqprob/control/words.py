"""Constraints over the words of a text, and their lifting to a DFA over UTF-8 bytes.

What a word is (one definition shared by the automata and by :func:`words_of`): a maximal run
of the text's characters that are ASCII letters or digits or other non-ASCII characters (so
``café`` is one word and ``dog's`` is ``dog`` and ``s``); every other character separates
words: ASCII space, punctuation and controls, and the non-ASCII punctuation of
:data:`SEPARATORS` (``words—je`` is ``words`` and ``je``; “quotes”, ‘quotes’, – — …, no-break
and other special spaces). Matching ignores ASCII case. On bytes that are not valid UTF-8, a
byte that does not complete a separator counts as a word byte.

A :class:`WordDFA` is a :class:`~seqprob.control.dfa.DFA` whose alphabet is its ``words`` (the
words the constraint mentions, symbol ``i`` is ``words[i]``) plus one last symbol for every other
word. Constraints made separately combine with ``&``, ``|``, ``~`` (their alphabets are merged
first). :func:`to_bytes` compiles a WordDFA into a :class:`ByteDFA` that reads raw text bytes,
tracking the partial word with a trie, which ``seqprob.control.tokens`` then compiles to tokens.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable, Sequence

import numpy as np

from seqprob.control.dfa import DFA
from seqprob.core.validation import check_int, describe

#: Non-ASCII characters that separate words: the C1 controls and the Latin-1 punctuation and
#: symbols U+0080–U+00BF (less its letters and numbers ª ² ³ µ ¹ º ¼ ½ ¾) and the General
#: Punctuation block U+2000–U+206F (dashes, curly quotes, ellipsis, special spaces).
SEPARATORS = frozenset(chr(c) for c in [*range(0x80, 0xC0), *range(0x2000, 0x2070)]
                       if chr(c) not in "ª²³µ¹º¼½¾")
_SEPARATOR_BYTES = frozenset(c.encode("utf-8") for c in SEPARATORS)
_SEPARATOR = b"|".join(re.escape(b) for b in sorted(_SEPARATOR_BYTES))
# a separator is matched whole (group 1) so that scanning never starts inside one
_WORD = re.compile(rb"(" + _SEPARATOR + rb")|((?:(?!" + _SEPARATOR + rb")[A-Za-z0-9\x80-\xff])+)")
_WORD_BYTES = np.array([bool(re.fullmatch(rb"[A-Za-z0-9\x80-\xff]", bytes([b])))
                        for b in range(256)])
# the proper prefixes of the separators' encodings: bytes read but not yet known to be a word's
_PENDING = tuple(sorted({b[:i] for b in _SEPARATOR_BYTES for i in range(1, len(b))}))


def words_of(text: str) -> list[bytes]:
    """The words of ``text`` (UTF-8 bytes, ASCII-lowercased), in order."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {describe(text)}")
    return [m[2] for m in _WORD.finditer(text.encode("utf-8").lower()) if m[2]]


def _phrase(phrase: str, name: str) -> tuple[bytes, ...]:
    words = tuple(words_of(phrase))
    if not words:
        raise ValueError(f"{name}: expected a phrase with at least one word (letters, digits "
                         f"or non-ASCII characters), got {phrase!r}")
    return words


@dataclasses.dataclass(frozen=True, eq=False)
class WordDFA:
    """A DFA over ``words`` (sorted, lowercase UTF-8) plus a last symbol for any other word."""

    dfa: DFA
    words: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.dfa.n_symbols != len(self.words) + 1:
            raise ValueError(f"dfa: expected {len(self.words) + 1} symbols (the words and one "
                             f"for any other word), got {self.dfa.n_symbols}")

    def symbols(self, text: str) -> list[int]:
        index = {w: i for i, w in enumerate(self.words)}
        return [index.get(w, len(self.words)) for w in words_of(text)]

    def accepts_text(self, text: str) -> bool:
        return self.dfa.accepts(self.symbols(text))

    def over(self, words: Sequence[bytes]) -> WordDFA:
        """The same language over a larger word alphabet ``words`` (a superset of ours)."""
        index = {w: i for i, w in enumerate(self.words)}
        cols = [index.get(w, len(self.words)) for w in words] + [len(self.words)]
        return WordDFA(DFA(self.dfa.transitions[:, cols], self.dfa.accepting, self.dfa.start),
                       tuple(words))

    def _unified(self, other: WordDFA) -> tuple[DFA, DFA, tuple[bytes, ...]]:
        if not isinstance(other, WordDFA):
            raise TypeError(f"other: expected a WordDFA, got {describe(other)}")
        words = tuple(sorted(set(self.words) | set(other.words)))
        return self.over(words).dfa, other.over(words).dfa, words

    def __and__(self, other: WordDFA) -> WordDFA:
        a, b, words = self._unified(other)
        return WordDFA(a & b, words)

    def __or__(self, other: WordDFA) -> WordDFA:
        a, b, words = self._unified(other)
        return WordDFA(a | b, words)

    def __invert__(self) -> WordDFA:
        return WordDFA(~self.dfa, self.words)


def _aho_corasick(patterns: Sequence[Sequence[int]], n_symbols: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Aho–Corasick automaton of ``patterns`` (symbol sequences): the complete goto function
    ``(n_nodes, n_symbols)`` (failure links folded in; node 0 is the root) and ``match``
    ``(n_nodes,)``, true where some pattern ends (at the node or a suffix of it)."""
    children: list[dict[int, int]] = [{}]
    terminal = [False]
    for pattern in patterns:
        node = 0
        for a in pattern:
            if a not in children[node]:
                children[node][a] = len(children)
                children.append({})
                terminal.append(False)
            node = children[node][a]
        terminal[node] = True
    goto = np.zeros((len(children), n_symbols), dtype=np.int64)
    match = np.array(terminal)
    fail = np.zeros(len(children), dtype=np.int64)
    queue = []
    for a, child in children[0].items():
        goto[0, a] = child
        queue.append(child)
    for node in queue:  # breadth-first: a node's failure target is settled before the node
        goto[node] = goto[fail[node]]
        match[node] |= match[fail[node]]
        for a, child in children[node].items():
            fail[child] = goto[fail[node], a]
            goto[node, a] = child
            queue.append(child)
    return goto, match


def contains(*alternatives: str) -> WordDFA:
    """Texts in which some alternative phrase (e.g. ``"throws"``, ``"ice cream"``) occurs as
    consecutive words. Several alternatives: any one suffices (Aho–Corasick automaton)."""
    if not alternatives:
        raise ValueError("alternatives: expected at least one phrase, got none")
    phrases = [_phrase(p, "alternatives") for p in _strings(alternatives, "alternatives")]
    words = tuple(sorted({w for p in phrases for w in p}))
    index = {w: i for i, w in enumerate(words)}
    goto, match = _aho_corasick([[index[w] for w in p] for p in phrases], len(words) + 1)
    goto[match] = np.flatnonzero(match)[:, None]  # once seen, always seen
    return WordDFA(DFA(goto, match).minimize(), words)


def banned(*phrases: str) -> WordDFA:
    """Texts in which none of ``phrases`` occurs."""
    return ~contains(*phrases)


def avoided_forms(*words: str) -> tuple[str, ...]:
    """Every inflection (:func:`inflections`) of each single word of ``words``, and each
    phrase of several words as given, sorted."""
    phrases = _strings(words, "words")
    return tuple(sorted({f for w in phrases for f in (
        inflections(w) if len(_phrase(w, "words")) == 1 else (w.strip().lower(),))}))


def avoided(*words: str) -> WordDFA:
    """Texts in which none of :func:`avoided_forms` of ``words`` occurs (``avoided("dog")``
    bans ``dog`` and ``dogs``; :func:`banned` bans exactly the phrases given)."""
    return banned(*avoided_forms(*words))


def ordered(*phrases: str | Sequence[str]) -> WordDFA:
    """Texts in which the phrases occur in this order, without overlapping. An item may be a
    tuple of alternatives (any one of them fills that place)."""
    if not phrases:
        raise ValueError("phrases: expected at least one phrase, got none")
    stages = [[_phrase(p, "phrases") for p in ((item,) if isinstance(item, str) else
                                                _strings(item, "phrases"))] for item in phrases]
    words = tuple(sorted({w for stage in stages for p in stage for w in p}))
    index = {w: i for i, w in enumerate(words)}
    tables, offset = [], 0
    for stage in stages:
        goto, match = _aho_corasick([[index[w] for w in p] for p in stage], len(words) + 1)
        n = goto.shape[0]
        nxt = offset + n  # the next stage's root (or the final state)
        tables.append(np.where(match[goto], nxt, goto + offset))
        offset = nxt
    final = np.full((1, len(words) + 1), offset, dtype=np.int64)
    trans = np.concatenate([*tables, final])
    acc = np.zeros(offset + 1, dtype=bool)
    acc[-1] = True
    return WordDFA(DFA(trans, acc).minimize(), words)


def word_count(minimum: int = 0, maximum: int | None = None) -> WordDFA:
    """Texts with between ``minimum`` and ``maximum`` (inclusive; ``None``: no bound) words."""
    check_int(minimum, "minimum", minimum=0)
    if maximum is not None:
        check_int(maximum, "maximum", minimum=minimum)
    cap = minimum if maximum is None else maximum + 1
    counts = np.arange(cap + 1)
    trans = np.minimum(counts + 1, cap)[:, None]  # (cap + 1, 1): every word counts
    acc = (counts >= minimum) & ((counts <= maximum) if maximum is not None else True)
    return WordDFA(DFA(trans, acc).minimize(), ())


def ends_with(suffix: str) -> ByteDFA:
    """Texts whose UTF-8 bytes end with ``suffix`` exactly (case and punctuation included; the
    infilling constraint "the text must end with ..."): a byte-level automaton, since a suffix
    need not end on a word boundary. Its states are the longest prefixes of ``suffix`` that
    end the text so far (Knuth–Morris–Pratt, via the one-pattern Aho–Corasick automaton)."""
    if not isinstance(suffix, str) or not suffix:
        raise ValueError(f"suffix: expected a non-empty string, got {describe(suffix)}")
    data = suffix.encode("utf-8")
    alphabet = sorted(set(data))
    byte_class = np.zeros(256, dtype=np.int64)  # class 0: bytes outside the suffix
    byte_class[alphabet] = np.arange(1, len(alphabet) + 1)
    goto, match = _aho_corasick([byte_class[list(data)].tolist()], len(alphabet) + 1)
    return ByteDFA(DFA(goto, match).minimize(), byte_class)


def one_sentence(terminals: str = ".!?") -> ByteDFA:
    """Texts that are one sentence on one line: no line break (``\\n``, ``\\r``) anywhere, and
    exactly one byte of ``terminals``, as the text's last byte. With EOS modelled the text ends
    at its first terminal punctuation (no second sentence, no trailing remark); the price is
    that a decimal point or an abbreviation's period ("3.5", "Mr.") cannot occur inside."""
    if not isinstance(terminals, str) or not terminals or not terminals.isascii() or any(
            c.isalnum() or c.isspace() for c in terminals):
        raise ValueError(f"terminals: expected ASCII punctuation characters, got "
                         f"{describe(terminals)}")
    byte_class = np.zeros(256, dtype=np.int64)  # 0: any other byte
    byte_class[list(terminals.encode())] = 1
    byte_class[[ord("\n"), ord("\r")]] = 2
    # states: 0 inside the sentence, 1 just ended (accepting), 2 dead
    trans = np.array([[0, 1, 2], [2, 2, 2], [2, 2, 2]])
    return ByteDFA(DFA(trans, np.array([False, True, False])), byte_class)


def inflections(word: str) -> tuple[str, ...]:
    """``word`` and its inflections for every part of speech (lemminflect; out-of-vocabulary
    words get the regular noun and verb forms), sorted."""
    try:
        from lemminflect import getAllInflections, getAllInflectionsOOV
    except ImportError as err:
        raise ImportError("inflections need lemminflect: pip install 'seqprob[control]'") from err

    if not isinstance(word, str) or not words_of(word):
        raise ValueError(f"word: expected a non-empty word, got {describe(word)}")
    lemma = word.strip().lower()
    forms = {lemma}
    table = getAllInflections(lemma)
    if not table:
        table = {**getAllInflectionsOOV(lemma, "NOUN"), **getAllInflectionsOOV(lemma, "VERB")}
    for values in table.values():
        forms.update(v.lower() for v in values)
    return tuple(sorted(forms))


def keyword(concept: str, *, inflect: bool = True) -> WordDFA:
    """Texts that contain ``concept`` in some inflection (``throw``: ``throws``, ``threw``,
    ``thrown``, ``throwing``), or exactly as given when ``inflect=False``."""
    return contains(*(inflections(concept) if inflect else (concept,)))


def _strings(items: Iterable[object], name: str) -> list[str]:
    out = list(items)
    bad = [x for x in out if not isinstance(x, str)]
    if bad or not out:
        raise TypeError(f"{name}: expected non-empty strings, got {describe(out)}")
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class ByteDFA:
    """A DFA over byte classes: ``byte_class`` ``(256,)`` maps each byte to its symbol.

    ``token_end`` ``(n_dfa_states,)``, when set, is applied after every whole token (see
    :func:`to_bytes`'s ``token_prefixes``); the byte-level language is that of ``dfa``."""

    dfa: DFA
    byte_class: np.ndarray
    token_end: np.ndarray | None = None

    def run_bytes(self, data: bytes, state: int | None = None) -> int:
        return self.dfa.run(self.byte_class[np.frombuffer(data, dtype=np.uint8)].tolist(), state)

    def accepts_text(self, text: str) -> bool:
        return bool(self.dfa.accepting[self.run_bytes(text.encode("utf-8"))])


def to_bytes(word_dfa: WordDFA, token_prefixes: Collection[bytes] | None = None) -> ByteDFA:
    """Compile a word-level DFA into a minimal DFA over the text's bytes.

    A state is a triple (word-DFA state, trie node, pending bytes): the trie node is the
    partial word read so far (the root between words; a sink node once the partial word can no
    longer become one of ``words``); the pending bytes begin a multi-byte separator of
    :data:`SEPARATORS` (e.g. ``e2 80`` of the em dash) and are not yet known to be one. A
    separator (an ASCII byte, or the last byte of a non-ASCII one) feeds the finished word to
    the word DFA; pending bytes that turn out not to be a separator extend the word. A state
    accepts when the word DFA would accept after the pending word is fed (end of text ends the
    word).

    ``token_prefixes`` (lowercase UTF-8): the partial words a token may end in and still count
    (e.g. the word parts at the boundaries of the tokenizer's own spellings of the words).
    A token that ends in another partial word sends it to the sink instead, so words spelled
    by other token sequences are not recognized. The automata get much smaller; this is sound
    only for constraints that recognizing a word can never violate (keywords, not bans). A
    token that ends inside a possible non-ASCII separator goes to the sink too."""
    word_class, n_word_classes = _byte_classes(word_dfa.words)
    child, sym, prefix = _word_trie(word_dfa.words, word_class, n_word_classes,
                                    len(word_dfa.words))
    n_nodes = child.shape[0]
    trans_w = word_dfa.dfa.transitions
    q, node = np.divmod(np.arange(word_dfa.dfa.n_dfa_states * n_nodes), n_nodes)
    flushed = np.where(node == 0, q, trans_w[q, sym[node]])  # word-DFA state after the word
    words = q[:, None] * n_nodes + child[node]  # (Q*N, C): word bytes extend the word
    words[:, 0] = flushed * n_nodes  # separator: feed the word, back to the root
    byte_class, trans = _with_pending(words, word_class)
    accepting = word_dfa.dfa.accepting[flushed][_feed_word(words, word_class, _PENDING)]
    dfa = DFA(trans, np.concatenate([word_dfa.dfa.accepting[flushed], accepting.T.ravel()]),
              word_dfa.dfa.start * n_nodes)
    if token_prefixes is None:
        return ByteDFA(dfa.minimize(), byte_class)
    allowed = set(token_prefixes)
    keep = np.array([n < 2 or p in allowed or sym[n] != sym[1] for n, p in enumerate(prefix)])
    token_end = np.where(keep[node], np.arange(node.size), q * n_nodes + 1)
    # a token that ends inside a possible separator (byte-level pieces of "—") also goes to
    # the sink: the word it may end is not recognized (sound, as above; such splits are rare)
    return ByteDFA(dfa, byte_class, np.concatenate([token_end, np.tile(q * n_nodes + 1,
                                                                       len(_PENDING))]))


def _feed_word(words: np.ndarray, word_class: np.ndarray, pieces: Sequence[bytes]
               ) -> np.ndarray:
    """``(n_states, len(pieces))``: the state of ``words`` after each piece, read as word
    bytes, from every state."""
    out = np.repeat(np.arange(words.shape[0])[:, None], len(pieces), axis=1)
    for j, piece in enumerate(pieces):
        for b in piece:
            out[:, j] = words[out[:, j], word_class[b]]
    return out


def _with_pending(words: np.ndarray, word_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Extend the table ``words`` ``(S, C)`` over word classes (class 0: separator) to read
    multi-byte separators: states ``p * S + s`` hold pending prefix ``_PENDING[p - 1]``
    (``p = 0``: none). Returns the byte classes ``(256,)`` (bytes that act alike share one)
    and the table ``(S * (1 + len(_PENDING)), n_classes)``."""
    n, pending = words.shape[0], {b: i + 1 for i, b in enumerate(_PENDING)}

    def step(pend: bytes, b: int) -> tuple[np.ndarray, int]:
        """Where byte ``b`` leads from pending ``pend``: (state map over S, next pending)."""
        data = pend + bytes([b])
        if data in _SEPARATOR_BYTES:
            return words[:, 0], 0
        if data in pending:
            return np.arange(n), pending[data]
        if not pend:
            return words[:, word_class[b]], 0
        states, nxt = step(b"", b)  # pending bytes were a word's: feed them, then ``b``
        return states[_feed_word(words, word_class, [pend])[:, 0]], nxt

    def role(data: bytes) -> int:
        return -1 if data in _SEPARATOR_BYTES else pending.get(data, 0)

    signature = [(int(word_class[b]), *(role(p + bytes([b])) for p in (b"", *_PENDING)))
                 for b in range(256)]
    keys = sorted(set(signature))
    byte_class = np.array([keys.index(k) for k in signature], dtype=np.int64)
    reps = [signature.index(k) for k in keys]  # one byte per class
    trans = np.empty((n * (1 + len(_PENDING)), len(keys)), dtype=np.int64)
    for p, pend in enumerate((b"", *_PENDING)):
        for c, b in enumerate(reps):
            states, nxt = step(pend, b)
            trans[p * n:(p + 1) * n, c] = states + nxt * n
    return byte_class, trans


def _byte_classes(words: Sequence[bytes]) -> tuple[np.ndarray, int]:
    """Class 0: separators; 1: word bytes that occur in no word; then one class per byte that
    occurs in ``words`` (upper-case ASCII letters share their lower-case letter's class).
    Bytes of non-ASCII separators are word bytes here; :func:`_with_pending` splits them."""
    byte_class = np.where(_WORD_BYTES, 1, 0).astype(np.int64)
    for i, b in enumerate(sorted({b for w in words for b in w})):
        byte_class[b] = 2 + i
        if ord("a") <= b <= ord("z"):
            byte_class[b - 32] = 2 + i
    return byte_class, int(byte_class.max()) + 1


def _word_trie(words: Sequence[bytes], byte_class: np.ndarray, n_classes: int, other: int
               ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """Trie of ``words`` over byte classes: ``child`` ``(n_nodes, n_classes)`` (node 0: root,
    node 1: sink for words outside the trie; column 0, the separator, is unused), ``sym``
    ``(n_nodes,)``, the word symbol a node spells (``other`` where it spells none), and the
    partial word of each node."""
    child_lists: list[dict[int, int]] = [{}, {}]
    sym = [other, other]
    prefix = [b"", b""]
    for i, word in enumerate(words):
        node = 0
        for j, b in enumerate(word):
            c = int(byte_class[b])
            if c not in child_lists[node]:
                child_lists[node][c] = len(child_lists)
                child_lists.append({})
                sym.append(other)
                prefix.append(word[:j + 1])
            node = child_lists[node][c]
        sym[node] = i
    child = np.ones((len(child_lists), n_classes), dtype=np.int64)
    for node, kids in enumerate(child_lists):
        for c, k in kids.items():
            child[node, c] = k
    return child, np.asarray(sym, dtype=np.int64), prefix

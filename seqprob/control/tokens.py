"""Compile a byte-level DFA into a DFA over a language model's tokens, with token classes.

Every token id gets its exact UTF-8 bytes from the tokenizer (byte-level BPE as in GPT-2 and
Llama 3 / SmolLM2, ``Ġword``; SentencePiece with ``▁word`` and ``<0xAB>`` byte fallback), so
tokens that span word boundaries, carry a leading space or are fragments of words are handled
by running the byte DFA over them. Tokens whose columns of the resulting transition table are
identical share a class: the token DFA is a DFA over classes plus a map ``token_class``
``(vocab,)``, and masks are ``(classes x vocab)``.

End of sequence: the EOS token moves every state to a terminal state, accepting exactly when
the text so far is accepted (and absorbing: tokens after EOS are not part of the text).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from seqprob.control.dfa import DFA, product
from seqprob.control.words import ByteDFA, keyword, to_bytes
from seqprob.core.validation import check_int, describe


@dataclasses.dataclass(frozen=True, eq=False)
class TokenDFA:
    """A DFA over token classes: ``dfa`` ``(n_dfa_states, n_classes)``, ``token_class``
    ``(vocab,)``; ``eos_token_id`` is ``None`` when the EOS token is not modelled."""

    dfa: DFA
    token_class: np.ndarray
    eos_token_id: int | None = None

    @property
    def vocab_size(self) -> int:
        return self.token_class.shape[0]

    @property
    def n_classes(self) -> int:
        return self.dfa.n_symbols

    def run_tokens(self, token_ids: Sequence[int], state: int | None = None) -> int:
        return self.dfa.run(self.token_class[np.asarray(token_ids, dtype=np.int64)].tolist(),
                            state)

    def accepts_tokens(self, token_ids: Sequence[int]) -> bool:
        return bool(self.dfa.accepting[self.run_tokens(token_ids)])

    def __and__(self, other: TokenDFA) -> TokenDFA:
        return self._combine(other, np.logical_and)

    def __or__(self, other: TokenDFA) -> TokenDFA:
        return self._combine(other, np.logical_or)

    def __invert__(self) -> TokenDFA:
        return TokenDFA(~self.dfa, self.token_class, self.eos_token_id)

    def _combine(self, other: TokenDFA, combine: Callable[..., np.ndarray]) -> TokenDFA:
        """Product over joint classes: tokens in the same class of both automata share one."""
        if not isinstance(other, TokenDFA):
            raise TypeError(f"other: expected a TokenDFA, got {describe(other)}")
        if (other.vocab_size, other.eos_token_id) != (self.vocab_size, self.eos_token_id):
            raise ValueError("other: expected a TokenDFA for the same vocabulary and EOS token, "
                             f"got vocab {other.vocab_size} and EOS {other.eos_token_id} "
                             f"(ours: {self.vocab_size} and {self.eos_token_id})")
        pairs = self.token_class * other.n_classes + other.token_class
        joint, token_class = np.unique(pairs, return_inverse=True)
        a = DFA(self.dfa.transitions[:, joint // other.n_classes], self.dfa.accepting,
                self.dfa.start)
        b = DFA(other.dfa.transitions[:, joint % other.n_classes], other.dfa.accepting,
                other.dfa.start)
        dfa = product(a, b, combine)
        columns, merged = _unique_columns(dfa.transitions)  # classes the product cannot tell apart
        return TokenDFA(DFA(columns, dfa.accepting, dfa.start), merged[token_class.reshape(-1)],
                        self.eos_token_id)

    def token_transitions(self) -> np.ndarray:
        """``(n_dfa_states, vocab)``: the successor of every state under every token."""
        return self.dfa.transitions[:, self.token_class]


def _bytes_to_unicode() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[str, int]:
    return _bytes_to_unicode()


def token_bytes(tokenizer: Any, vocab_size: int | None = None) -> list[bytes]:
    """The UTF-8 bytes each token id contributes to decoded text (Hugging Face tokenizer).

    Special tokens (EOS, BOS, chat markers, ...) and ids beyond the tokenizer (padding of the
    model's vocabulary) contribute nothing, as in ``decode(..., skip_special_tokens=True)``."""
    n = len(tokenizer)
    vocab_size = n if vocab_size is None else check_int(vocab_size, "vocab_size", minimum=n)
    ids = list(range(n))
    pieces = tokenizer.convert_ids_to_tokens(ids)
    decoder = _decoder_kind(tokenizer)
    if decoder == "bytelevel":
        alphabet = _byte_alphabet()
        out = [bytes(alphabet[ch] for ch in piece) if all(ch in alphabet for ch in piece)
               else piece.encode("utf-8") for piece in pieces]
    elif decoder == "sentencepiece":
        out = [_sentencepiece_bytes(piece) for piece in pieces]
    else:
        raise ValueError("tokenizer: expected a fast Hugging Face tokenizer with a byte-level "
                         "(GPT-2 style) or SentencePiece (Metaspace / byte fallback) decoder, "
                         f"got {type(tokenizer).__name__} with decoder {decoder!r}")
    for i in set(getattr(tokenizer, "all_special_ids", [])):
        out[i] = b""
    for i in getattr(tokenizer, "added_tokens_decoder", {}):
        if getattr(tokenizer.added_tokens_decoder[i], "special", False):
            out[i] = b""
    return out + [b""] * (vocab_size - n)


def _decoder_kind(tokenizer: Any) -> str | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.decoder is None:
        return None
    spec = json.loads(backend.to_str()).get("decoder") or {}
    kinds = {spec.get("type")} | {d.get("type") for d in spec.get("decoders") or []}
    if "ByteLevel" in kinds:
        return "bytelevel"
    if "ByteFallback" in kinds or "Metaspace" in kinds:
        return "sentencepiece"
    return str(spec.get("type"))


def _sentencepiece_bytes(piece: str) -> bytes:
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("▁", " ").encode("utf-8")


def compile_tokens(byte_dfa: ByteDFA, tokens: Sequence[bytes], *,
                   eos_token_id: int | None = None, require_eos: bool = False) -> TokenDFA:
    """The minimal token-level DFA of ``byte_dfa`` for a vocabulary whose token ``i`` spells
    ``tokens[i]`` (see :func:`token_bytes`).

    ``eos_token_id``: the token that ends the text (see the module docstring);
    ``require_eos``: accept only texts that ended with it (within the budget)."""
    if not isinstance(byte_dfa, ByteDFA):
        raise TypeError(f"byte_dfa: expected a ByteDFA, got {describe(byte_dfa)}")
    vocab = len(tokens)
    if vocab == 0:
        raise ValueError("tokens: expected a non-empty vocabulary, got none")
    if eos_token_id is not None:
        check_int(eos_token_id, "eos_token_id", minimum=0, maximum=vocab - 1)
    elif require_eos:
        raise ValueError("require_eos: needs eos_token_id, got None")
    trans, acc = byte_dfa.dfa.transitions, byte_dfa.dfa.accepting
    seqs, lengths, seq_of_token = _class_sequences(tokens, byte_dfa.byte_class, trans)
    if byte_dfa.token_end is None:
        table = _run_all(trans, seqs, lengths)  # (Q, U): successor of every state and sequence
    else:  # tokens start only where one ended: run those states (the rest are unreachable)
        table = np.repeat(np.arange(trans.shape[0])[:, None], seqs.shape[0], axis=1)
        starts = np.unique(np.append(byte_dfa.token_end, byte_dfa.dfa.start))
        table[starts] = byte_dfa.token_end[_run_all(trans, seqs, lengths, starts)]
    if eos_token_id is not None:
        table, acc, seq_of_token = _with_eos(table, acc, seq_of_token, eos_token_id, require_eos)
    columns, seq_class = _unique_columns(table)
    dfa = DFA(columns, acc, byte_dfa.dfa.start).minimize()
    return TokenDFA(dfa, seq_class[seq_of_token], eos_token_id)


def compile_keywords(concepts: Sequence[str], tokens: Sequence[bytes], *,
                     eos_token_id: int | None = None, inflect: bool = True,
                     spell: Callable[[str], Sequence[bytes]] | None = None) -> TokenDFA:
    """Every concept present in some inflection (CommonGen), as a token DFA: each keyword is
    compiled on its own (small automata) and the results are intersected at the token level.
    A keyword that no token sequence can spell is refused, by name.

    ``spell``: the tokenizer's own spelling of a text as token bytes (``tokenizer.encode``
    mapped through ``tokens``). When given, a keyword counts only where its word is spelled
    the tokenizer's way (after a space, at the start, capitalized or not): far smaller
    automata, and still every accepted text contains every concept."""
    concepts = list(concepts)
    if not concepts or not all(isinstance(c, str) and c.strip() for c in concepts):
        raise ValueError(f"concepts: expected a non-empty list of words, got {describe(concepts)}")
    result = None
    for concept in concepts:
        word_dfa = keyword(concept, inflect=inflect)
        prefixes = None if spell is None else _spelled_prefixes(word_dfa.words, spell)
        part = compile_tokens(to_bytes(word_dfa, prefixes), tokens, eos_token_id=eos_token_id)
        if part.dfa.is_empty():
            raise ValueError(f"concepts: the tokenizer cannot produce {concept!r}")
        result = part if result is None else result & part
    return result


def _spelled_prefixes(words: Sequence[bytes], spell: Callable[[str], Sequence[bytes]]
                      ) -> set[bytes]:
    """The partial words at the token boundaries of the tokenizer's spellings of ``words``."""
    prefixes = set()
    for word in words:
        text = word.decode("utf-8")
        for variant in {text, text.capitalize(), " " + text, " " + text.capitalize()}:
            spelled = b""
            for piece in spell(variant):
                spelled += piece
                prefixes.add(spelled.strip().lower())
    return prefixes


def _unique_columns(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct columns of ``table`` ``(Q, U)`` as ``(Q, C)`` and the index ``(U,)`` of
    each column among them (rows hashed as bytes: one sort instead of a lexicographic one)."""
    rows = np.ascontiguousarray(table.T)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return np.ascontiguousarray(rows[first].T), inverse.reshape(-1)


def _class_sequences(tokens: Sequence[bytes], byte_class: np.ndarray, trans: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct byte-class sequences of the tokens, with runs of an idempotent class (one
    whose second application changes nothing) collapsed: ``seqs`` ``(U, L)`` padded with -1,
    their ``lengths`` ``(U,)``, and the sequence index of every token ``(V,)``."""
    idempotent = (trans[trans, np.arange(trans.shape[1])] == trans).all(axis=0)
    flat, owner = _flatten(tuple(tokens))
    cls = byte_class[flat].astype(np.int16)  # (total,)
    repeat = np.zeros(cls.size, dtype=bool)
    repeat[1:] = (cls[1:] == cls[:-1]) & (owner[1:] == owner[:-1]) & idempotent[cls[1:]]
    cls, owner = cls[~repeat], owner[~repeat]
    kept = np.bincount(owner, minlength=len(tokens))  # (V,)
    width = max(int(kept.max(initial=0)), 1)
    padded = np.full((len(tokens), width), -1, dtype=np.int16)  # byte classes < 256
    starts = np.concatenate([[0], np.cumsum(kept)[:-1]])
    padded[owner, np.arange(cls.size) - starts[owner]] = cls
    keys = padded.view(np.dtype((np.void, 2 * width))).reshape(-1)
    _, first, seq_of_token = np.unique(keys, return_index=True, return_inverse=True)
    return padded[first].astype(np.int64), kept[first], seq_of_token.reshape(-1)


@lru_cache(maxsize=4)
def _flatten(tokens: tuple[bytes, ...]) -> tuple[np.ndarray, np.ndarray]:
    """All token bytes concatenated ``(total,)`` uint8 and the token of each byte ``(total,)``
    (cached: every keyword of a constraint reads the same vocabulary)."""
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    flat = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    return flat, np.repeat(np.arange(len(tokens)), lengths)


def _run_all(trans: np.ndarray, seqs: np.ndarray, lengths: np.ndarray,
             states: np.ndarray | None = None) -> np.ndarray:
    """``(len(states), U)``: each of ``states`` (default: all) run over every sequence
    ``seqs`` ``(U, L)`` (valid up to ``lengths``), one length at a time."""
    states = np.arange(trans.shape[0]) if states is None else states
    n = states.size
    out = np.empty((n, seqs.shape[0]), dtype=np.int64)
    for length in np.unique(lengths):
        cols = np.flatnonzero(lengths == length)
        cur = np.broadcast_to(states[:, None], (n, cols.size))
        for j in range(length):
            cur = trans[cur, seqs[None, cols, j]]
        out[:, cols] = cur
    return out


def _with_eos(table: np.ndarray, acc: np.ndarray, seq_of_token: np.ndarray, eos: int,
              require_eos: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the terminal states (accepted end, rejected end) and the EOS column."""
    n, u = table.shape
    end_acc, end_rej = n, n + 1
    eos_col = np.where(acc, end_acc, end_rej)
    body = np.concatenate([table, eos_col[:, None]], axis=1)  # (Q, U + 1)
    ends = np.repeat(np.array([[end_acc], [end_rej]]), u + 1, axis=1)
    seq_of_token = seq_of_token.copy()
    seq_of_token[eos] = u
    accepting = np.concatenate([np.zeros(n, bool) if require_eos else acc, [True, False]])
    return np.concatenate([body, ends]), accepting, seq_of_token

"""Tractable control: constraints as DFAs over tokens, HMM-guided constrained decoding
(GeLaTo/Ctrl-G) and attribute control by expected attribute probability (TRACE).

Modules: ``dfa`` (automata), ``words`` (word constraints and their byte-level form),
``tokens`` (compilation to a tokenizer's tokens), ``hmm_tables`` (the HMM as probability
tables), ``constrained`` (the constraint processor), ``trace`` (attributes), ``generation``
(words to text, and :func:`logits_processor`), ``hf`` (that processor for ``transformers``).
"""

from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.defaults import default_attribute, default_hmm
from seqprob.control.dfa import DFA
from seqprob.control.generation import ControlResult, generate, logits_processor
from seqprob.control.hmm_tables import HMMTables, hmm_tables
from seqprob.control.tokens import TokenDFA, compile_keywords, compile_tokens, token_bytes
from seqprob.control.trace import AttributeProcessor, TokenAttribute, fit_attribute
from seqprob.control.words import (
    WordDFA,
    avoided,
    avoided_forms,
    banned,
    contains,
    ends_with,
    inflections,
    keyword,
    one_sentence,
    ordered,
    to_bytes,
    word_count,
)

__all__ = [
    "DFA",
    "AttributeProcessor",
    "ConstraintProcessor",
    "ControlResult",
    "HMMTables",
    "TokenAttribute",
    "TokenDFA",
    "WordDFA",
    "avoided",
    "avoided_forms",
    "banned",
    "compile_keywords",
    "compile_tokens",
    "contains",
    "default_attribute",
    "default_hmm",
    "ends_with",
    "fit_attribute",
    "generate",
    "hmm_tables",
    "inflections",
    "keyword",
    "logits_processor",
    "one_sentence",
    "ordered",
    "to_bytes",
    "token_bytes",
    "word_count",
]

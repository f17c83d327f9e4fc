"""``seqprob.control.generate``: keyword-constrained and attribute-controlled generation in
one call, from words to text.

Per-prompt keyword lists are handled by grouping the prompts that share a constraint: the
backward table is per constraint (its DFA states differ), so each group gets one
:class:`ConstraintProcessor` (one precomputation) and decodes as one batch; prompts with
distinct constraints decode as separate batches. Stacking tables of different constraints
into one processor would save decoding passes only when groups are large and alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.defaults import default_attribute, default_hmm
from seqprob.control.hmm_tables import HMMTables, hmm_tables
from seqprob.control.tokens import TokenDFA, compile_keywords, compile_tokens, token_bytes
from seqprob.control.trace import AttributeProcessor, TokenAttribute
from seqprob.control.words import (
    avoided,
    avoided_forms,
    ends_with,
    inflections,
    keyword,
    one_sentence,
    to_bytes,
    word_count,
)
from seqprob.core import LanguageModel
from seqprob.core.validation import check_int, describe
from seqprob.hmm import HMM
from seqprob.lm import NoRepeatNGram, chat_prompt
from seqprob.lm import generate as lm_generate


@dataclasses.dataclass
class ControlResult:
    """Per prompt, in order: ``texts``, ``token_ids`` (the new tokens), ``logprobs`` (each new
    token's log-probability under the controlled decoding distribution), ``model_logprobs``
    (the LM's own log-probability of each new token, before control) and ``satisfied``:
    whether every keyword occurs in some inflection, no avoided word occurs, the word count is
    in range and the text ends with the suffix (checked on the text by the word-level automata,
    independently of decoding; ``None`` without such constraints)."""

    texts: list[str]
    token_ids: list[list[int]]
    logprobs: list[list[float]]
    model_logprobs: list[list[float]]
    satisfied: list[bool | None]


def _tables(lm: LanguageModel, hmm: HMM | HMMTables | None, verbose: bool) -> HMMTables:
    if hmm is None:
        hmm = default_hmm(lm, verbose=verbose)
    if isinstance(hmm, HMM):
        if hmm.emission_kind != "categorical":
            raise ValueError(f"hmm: expected a categorical HMM, got {hmm.emission_kind} "
                             "emissions")
        hmm = hmm_tables(hmm.log_startprob.detach(), hmm.log_transmat.detach(),
                         hmm.emission.log_emission.detach())
    if not isinstance(hmm, HMMTables):
        raise TypeError(f"hmm: expected a seqprob.hmm.HMM, HMMTables or None, got "
                        f"{describe(hmm)}")
    if hmm.vocab_size != lm.vocab_size:
        raise ValueError(f"hmm: expected an HMM over the LM's vocabulary of {lm.vocab_size} "
                         f"tokens, got one over {hmm.vocab_size}")
    return hmm


CONCEPT_INSTRUCTION = ("Write one short sentence describing a common everyday scene that uses "
                       "all of these words: ")


CONCEPT_EXAMPLE = (("coffee", "drink", "garden", "morning"),
                   "He drinks his coffee in the garden every morning.")


def concept_prompt(lm: LanguageModel, concepts: Sequence[str],
                   examples: Sequence[tuple[Sequence[str], str]] = ()) -> str:
    """The CommonGen instruction for ``concepts`` as a user turn of the LM's chat template
    (plain text when the tokenizer has none), after one earlier exchange per example
    ``(concepts, sentence)`` (few-shot; e.g. ``[CONCEPT_EXAMPLE]``, whose concept set is none
    of CommonGen's dev sets)."""
    history = [(CONCEPT_INSTRUCTION + ", ".join(words), sentence)
               for words, sentence in examples]
    return chat_prompt(lm.tokenizer, CONCEPT_INSTRUCTION + ", ".join(concepts), history)


def _keyword_lists(keywords, n_prompts: int) -> list[tuple[str, ...]]:
    if keywords is None:
        return [()] * n_prompts
    if isinstance(keywords, str) or len(keywords) != n_prompts:
        raise ValueError(f"keywords: expected one list of words per prompt ({n_prompts}), got "
                         f"{describe(keywords)}")
    out = []
    for i, words in enumerate(keywords):
        if isinstance(words, str) or not words or not all(
                isinstance(w, str) and w.strip() for w in words):
            raise ValueError(f"keywords[{i}]: expected a non-empty list of words, got "
                             f"{describe(words)}")
        out.append(tuple(w.strip().lower() for w in words))
    return out


def _check_conflicts(keywords: Sequence[tuple[str, ...]], avoid: Sequence[str]) -> None:
    """Refuse a keyword that shares a form with an avoided word (either would be unmeetable)."""
    forms = set(avoided_forms(*avoid)) if avoid else set()
    for i, words in enumerate(keywords):
        for word in words:
            clash = forms.intersection(inflections(word))
            if clash:
                raise ValueError(f"keywords[{i}]: {word!r} is required but avoid bans "
                                 f"{sorted(clash)}")


def _attribute_processor(lm, tables, attributes, max_new_tokens, strength, rule, verbose):
    if attributes is None or (not isinstance(attributes, (str, TokenAttribute))
                              and not attributes):
        return None
    items = [attributes] if isinstance(attributes, (str, TokenAttribute)) else list(attributes)
    resolved = [default_attribute(lm, a, verbose=verbose) if isinstance(a, str) else a
                for a in items]
    for i, a in enumerate(resolved):
        if not isinstance(a, TokenAttribute):
            raise TypeError(f"attributes[{i}]: expected a TokenAttribute or a name, got "
                            f"{describe(a)}")
    combined = resolved[0]
    for a in resolved[1:]:
        combined = combined * a
    return AttributeProcessor(tables, combined, max_new_tokens=max_new_tokens,
                              strength=strength, rule=rule)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What every prompt shares: the HMM's tables, the constraints other than keywords (one
    token DFA or ``None``), the attribute processor, and the tokenizer's pieces."""

    lm: LanguageModel
    tables: HMMTables
    shared: TokenDFA | None
    attribute: AttributeProcessor | None
    pieces: list[bytes]
    eos: int | None
    max_new_tokens: int

    def processors(self, words: tuple[str, ...]) -> list:
        """The seqprob logits processors for one keyword list: constraint, then attribute."""
        constraint = _constraint_processor(self.lm, self.tables, words, self.shared,
                                           self.pieces, self.eos, self.max_new_tokens)
        return [p for p in (constraint, self.attribute) if p is not None]


@dataclasses.dataclass(frozen=True)
class _TextRules:
    """The constraints on the text that every prompt shares (checked on construction):
    avoided words, a word-count range, a suffix, one sentence."""

    avoid: tuple[str, ...] = ()
    min_words: int | None = None
    max_words: int | None = None
    suffix: str | None = None
    one_sentence: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.avoid, str):
            raise TypeError("avoid: expected a list of words, got a string")
        object.__setattr__(self, "avoid", tuple(self.avoid))
        if self.min_words is not None:
            check_int(self.min_words, "min_words", minimum=0)
        if self.max_words is not None:
            check_int(self.max_words, "max_words", minimum=max(self.min_words or 0, 1))
        if self.suffix is not None and (not isinstance(self.suffix, str) or not self.suffix):
            raise ValueError(f"suffix: expected a non-empty string, got {describe(self.suffix)}")
        if not isinstance(self.one_sentence, bool):
            raise TypeError(f"one_sentence: expected a bool, got {describe(self.one_sentence)}")

    def __bool__(self) -> bool:
        return self != _TextRules()

    def _word_dfa(self):
        """The word-level part (avoided words and the word count), ``None`` without it."""
        words = avoided(*self.avoid) if self.avoid else None
        if (self.min_words, self.max_words) != (None, None):
            length = word_count(self.min_words or 0, self.max_words)
            words = length if words is None else words & length
        return words

    def byte_dfas(self) -> list:
        """The rules as byte-level automata (to be compiled to the LM's tokens)."""
        words = self._word_dfa()
        parts = [] if words is None else [to_bytes(words)]
        if self.suffix is not None:
            parts.append(ends_with(self.suffix))
        if self.one_sentence:
            parts.append(one_sentence())
        return parts

    def check(self, text: str) -> bool:
        """Whether ``text`` keeps every rule (read by the automata, independently of decoding)."""
        return all(dfa.accepts_text(text) for dfa in self.byte_dfas())


def _plan(lm, hmm, *, lists, rules, constraints, attributes, strength, rule, max_new_tokens,
          verbose) -> _Plan:
    """Check every input (before any decoding) and build what the prompts share."""
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    _check_conflicts(lists, rules.avoid)
    if constraints is not None and not isinstance(constraints, TokenDFA):
        raise TypeError(f"constraints: expected a TokenDFA, got {describe(constraints)}")
    tables = _tables(lm, hmm, verbose)
    eos = lm.eos_token_ids[0] if lm.eos_token_ids else None
    pieces = token_bytes(lm.tokenizer, lm.vocab_size)
    shared = _shared_constraint(rules, constraints, pieces, eos)
    attribute = _attribute_processor(lm, tables, attributes, max_new_tokens, strength, rule,
                                     verbose)
    return _Plan(lm, tables, shared, attribute, pieces, eos, max_new_tokens)


def generate(lm: LanguageModel, prompts: Sequence[str], hmm: HMM | HMMTables | None = None, *,
             keywords: Sequence[Sequence[str]] | None = None, avoid: Sequence[str] = (),
             constraints: TokenDFA | None = None,
             attributes: str | TokenAttribute | Sequence[str | TokenAttribute] | None = None,
             strength: float = 1.0, rule: str = "trace", max_new_tokens: int = 32,
             min_words: int | None = None, max_words: int | None = None,
             suffix: str | None = None, one_sentence: bool = False, candidates: int = 1,
             no_repeat_ngram: int | None = None, verbose: bool = False,
             **decoding) -> ControlResult:
    """Continue ``prompts`` so that each output contains every word of its ``keywords`` list
    (any inflection) and no inflection of a word of ``avoid``, has between ``min_words`` and
    ``max_words`` words (``None``: no bound), ends with the string ``suffix``, is one sentence
    on one line when ``one_sentence`` (ends at its first ``.``, ``!`` or ``?``; see
    :func:`~seqprob.control.words.one_sentence`), and satisfies ``constraints`` (a
    :class:`TokenDFA` over the LM's tokens, for every prompt) — with certainty, within
    ``max_new_tokens`` — and is steered toward ``attributes`` (names ``"nontoxic"``,
    ``"positive"`` or :class:`TokenAttribute` objects, multiplied) with ``strength`` under
    ``rule`` (see :class:`AttributeProcessor`). The HMM reads each prompt before the first new
    token.

    ``hmm``: an HMM over the LM's vocabulary (``None``: :func:`default_hmm`, distilled and
    cached on first use). ``decoding``: keyword arguments of :func:`seqprob.lm.generate`
    (``do_sample``, ``num_beams``, ``random_state``, ...). Every input error is raised before
    decoding starts.

    ``no_repeat_ngram`` = n forbids repeating a token n-gram of the output wherever the
    constraints leave another token (:class:`~seqprob.lm.NoRepeatNGram`, after the other
    processors: the guarantee holds).

    ``candidates`` > 1 reranks (as Ctrl-G does): per prompt, that many outputs are sampled
    under the same constraints (in the same batch) and the one with the highest mean LM
    log-probability per token is returned; every candidate keeps the constraints, so the
    choice does too."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts: expected a non-empty list of strings, got "
                         f"{describe(prompts)}")
    check_int(candidates, "candidates", minimum=1)
    if no_repeat_ngram is not None:
        check_int(no_repeat_ngram, "no_repeat_ngram", minimum=2)
    lists = _keyword_lists(keywords, len(prompts))
    if candidates > 1:
        if decoding.get("num_beams", 1) != 1 or decoding.get("do_sample") is False:
            raise ValueError(f"candidates: expected 1 with beam search or greedy decoding "
                             f"(reranking samples), got {candidates}")
        result = generate(lm, [p for p in prompts for _ in range(candidates)], hmm,
                          keywords=None if keywords is None else
                          [k for k in lists for _ in range(candidates)],
                          avoid=avoid, constraints=constraints, attributes=attributes,
                          strength=strength, rule=rule, max_new_tokens=max_new_tokens,
                          min_words=min_words, max_words=max_words, suffix=suffix,
                          one_sentence=one_sentence, no_repeat_ngram=no_repeat_ngram,
                          verbose=verbose, **{**decoding, "do_sample": True})
        return _rerank(result, candidates)
    rules = _TextRules(avoid, min_words, max_words, suffix, one_sentence)
    plan = _plan(lm, hmm, lists=lists, rules=rules, constraints=constraints,
                 attributes=attributes, strength=strength, rule=rule,
                 max_new_tokens=max_new_tokens, verbose=verbose)
    eos = plan.eos
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, words in enumerate(lists):
        groups.setdefault(words, []).append(i)
    tail = [] if no_repeat_ngram is None else [NoRepeatNGram(no_repeat_ngram)]
    plans = [(words, rows, plan.processors(words) + tail) for words, rows in groups.items()]
    texts: list[str] = [""] * len(prompts)
    ids: list[list[int]] = [[] for _ in prompts]
    lps: list[list[float]] = [[] for _ in prompts]
    model_lps: list[list[float]] = [[] for _ in prompts]
    stop = {"eos_token_id": () if eos is None else (eos,)}
    for _, rows, processors in plans:
        result = lm_generate(lm, [prompts[r] for r in rows], max_new_tokens,
                             logits_processors=processors, verbose=verbose,
                             **{**stop, **decoding})
        for j, r in enumerate(rows):
            n = int(result.lengths[j])
            texts[r], ids[r] = result.texts[j], result.token_ids[j, :n].tolist()
            lps[r] = result.logprobs[j, :n].tolist()
            model_lps[r] = result.model_logprobs[j, :n].tolist()
    checked = bool(keywords) or bool(rules)
    satisfied = [_satisfied(t, words, rules) if checked else None
                 for t, words in zip(texts, lists, strict=True)]
    return ControlResult(texts, ids, lps, model_lps, satisfied)


def _rerank(result: ControlResult, candidates: int) -> ControlResult:
    """Per consecutive group of ``candidates`` outputs, the one with the highest mean LM
    log-probability per token (the first among ties; an empty output scores -inf)."""
    keep = []
    for start in range(0, len(result.texts), candidates):
        scores = [sum(lp) / len(lp) if lp else -math.inf
                  for lp in result.model_logprobs[start:start + candidates]]
        keep.append(start + scores.index(max(scores)))
    return ControlResult(*([getattr(result, f.name)[i] for i in keep]
                           for f in dataclasses.fields(ControlResult)))


def logits_processor(lm: LanguageModel, keywords: Sequence[str] | None = None,
                     constraints: TokenDFA | None = None,
                     attributes: str | TokenAttribute | Sequence[str | TokenAttribute] |
                     None = None, hmm: HMM | HMMTables | None = None, *,
                     avoid: Sequence[str] = (), strength: float = 1.0, rule: str = "trace",
                     max_new_tokens: int = 32, min_words: int | None = None,
                     max_words: int | None = None, suffix: str | None = None,
                     one_sentence: bool = False, verbose: bool = False):
    """The control of :func:`generate` as a ``transformers.LogitsProcessor`` for
    ``lm.model.generate(..., logits_processor=LogitsProcessorList([p]),
    max_new_tokens=max_new_tokens)``: greedy, sampling and beam search, batched with left
    padding. ``keywords``: one list of words for every row. The constraint holds when
    ``generate``'s ``max_new_tokens`` is at most the one given here (its backward table's
    budget). See :class:`seqprob.control.hf.ControlLogitsProcessor` for how rows are tracked.
    """
    from seqprob.control.hf import ControlLogitsProcessor

    lists = _keyword_lists(None if keywords is None else [keywords], 1)
    rules = _TextRules(avoid, min_words, max_words, suffix, one_sentence)
    plan = _plan(lm, hmm, lists=lists, rules=rules, constraints=constraints,
                 attributes=attributes, strength=strength, rule=rule,
                 max_new_tokens=max_new_tokens, verbose=verbose)
    processors = plan.processors(lists[0])
    if not processors:
        raise ValueError("logits_processor: nothing to control; give keywords, constraints, "
                         "avoid, min_words/max_words, suffix, one_sentence or attributes")
    pad = getattr(lm.tokenizer, "pad_token_id", None)
    return ControlLogitsProcessor(processors, max_new_tokens=max_new_tokens,
                                  eos_token_ids=lm.eos_token_ids, pad_token_id=pad)


def _shared_constraint(rules: _TextRules, constraints, pieces, eos) -> TokenDFA | None:
    """The constraints every prompt shares as one token DFA (``None``: there are none)."""
    parts = [] if constraints is None else [constraints]
    parts += [compile_tokens(dfa, pieces, eos_token_id=eos) for dfa in rules.byte_dfas()]
    out = None
    for part in parts:
        out = part if out is None else out & part
    return out


def _constraint_processor(lm, tables, words, shared, pieces, eos, max_new_tokens):
    if not words and shared is None:
        return None
    dfa = shared
    if words:
        def spell(text: str) -> list[bytes]:
            return [pieces[t] for t in lm.tokenizer.encode(text, add_special_tokens=False)]

        kw = compile_keywords(list(words), pieces, eos_token_id=eos, spell=spell)
        dfa = kw if dfa is None else kw & dfa
    return ConstraintProcessor(tables, dfa, max_new_tokens=max_new_tokens)


def _satisfied(text: str, words: Sequence[str], rules: _TextRules) -> bool:
    """Checked on the text by the word- and byte-level automata."""
    return all(keyword(w).accepts_text(text) for w in words) and rules.check(text)

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
from collections.abc import Sequence

import torch

from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.defaults import default_attribute, default_hmm
from seqprob.control.hmm_tables import HMMTables, hmm_tables
from seqprob.control.tokens import TokenDFA, compile_keywords, compile_tokens, token_bytes
from seqprob.control.trace import AttributeProcessor, TokenAttribute
from seqprob.control.words import banned, inflections, keyword, to_bytes
from seqprob.core import LanguageModel
from seqprob.core.validation import check_int, describe
from seqprob.hmm import HMM
from seqprob.lm import chat_prompt
from seqprob.lm import generate as lm_generate


@dataclasses.dataclass
class ControlResult:
    """Per prompt, in order: ``texts``, ``token_ids`` (the new tokens), ``model_logprobs``
    (the LM's own log-probability of each new token, before control) and ``satisfied``:
    whether every keyword occurs in some inflection and no avoided word occurs (checked on the
    text by the word-level automata, independently of decoding; ``None`` without
    constraints)."""

    texts: list[str]
    token_ids: list[list[int]]
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


def concept_prompt(lm: LanguageModel, concepts: Sequence[str]) -> str:
    """The CommonGen instruction for ``concepts`` as a user turn of the LM's chat template
    (plain text when the tokenizer has none)."""
    return chat_prompt(lm.tokenizer, CONCEPT_INSTRUCTION + ", ".join(concepts))


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
    avoided = {a.strip().lower() for a in avoid}
    for i, words in enumerate(keywords):
        for word in words:
            clash = avoided.intersection(inflections(word))
            if clash:
                raise ValueError(f"keywords[{i}]: {word!r} is required but avoid bans "
                                 f"{sorted(clash)}")


def _attribute_processor(lm, tables, attributes, max_new_tokens, strength, verbose):
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
                              strength=strength)


def generate(lm: LanguageModel, prompts: Sequence[str], hmm: HMM | HMMTables | None = None, *,
             keywords: Sequence[Sequence[str]] | None = None, avoid: Sequence[str] = (),
             constraints: TokenDFA | None = None,
             attributes: str | TokenAttribute | Sequence[str | TokenAttribute] | None = None,
             strength: float = 1.0, max_new_tokens: int = 32, verbose: bool = False,
             **decoding) -> ControlResult:
    """Continue ``prompts`` so that each output contains every word of its ``keywords`` list
    (any inflection) and none of ``avoid``, and satisfies ``constraints`` (a
    :class:`TokenDFA` over the LM's tokens, for every prompt) — with certainty, within
    ``max_new_tokens`` — and is steered toward ``attributes`` (names ``"nontoxic"``,
    ``"positive"`` or :class:`TokenAttribute` objects, multiplied) with ``strength``.

    ``hmm``: an HMM over the LM's vocabulary (``None``: :func:`default_hmm`, distilled and
    cached on first use). ``decoding``: keyword arguments of :func:`seqprob.lm.generate`
    (``do_sample``, ``num_beams``, ``random_state``, ...). Every input error is raised before
    decoding starts."""
    if not isinstance(lm, LanguageModel):
        raise TypeError(f"lm: expected a seqprob LanguageModel, got {describe(lm)}")
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"prompts: expected a non-empty list of strings, got "
                         f"{describe(prompts)}")
    check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if isinstance(avoid, str):
        raise TypeError("avoid: expected a list of words, got a string")
    lists = _keyword_lists(keywords, len(prompts))
    _check_conflicts(lists, avoid)
    if constraints is not None and not isinstance(constraints, TokenDFA):
        raise TypeError(f"constraints: expected a TokenDFA, got {describe(constraints)}")
    tables = _tables(lm, hmm, verbose)
    eos = lm.eos_token_ids[0] if lm.eos_token_ids else None
    pieces = token_bytes(lm.tokenizer, lm.vocab_size)
    shared = _shared_constraint(avoid, constraints, pieces, eos)
    attribute = _attribute_processor(lm, tables, attributes, max_new_tokens, strength, verbose)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, words in enumerate(lists):
        groups.setdefault(words, []).append(i)
    plans = [(words, rows, _constraint_processor(lm, tables, words, shared, pieces, eos,
                                                 max_new_tokens))
             for words, rows in groups.items()]
    texts: list[str] = [""] * len(prompts)
    ids: list[list[int]] = [[] for _ in prompts]
    model_lps: list[list[float]] = [[] for _ in prompts]
    stop = {"eos_token_id": () if eos is None else (eos,)}
    for _, rows, processor in plans:
        processors = [p for p in (processor, attribute) if p is not None]
        result = lm_generate(lm, [prompts[r] for r in rows], max_new_tokens,
                             logits_processors=processors, verbose=verbose,
                             **{**stop, **decoding})
        for j, r in enumerate(rows):
            n = int(result.lengths[j])
            texts[r], ids[r] = result.texts[j], result.token_ids[j, :n].tolist()
            model_lps[r] = result.model_logprobs[j, :n].tolist()
    checked = bool(keywords) or bool(avoid)
    satisfied = [_satisfied(t, words, avoid) if checked else None
                 for t, words in zip(texts, lists, strict=True)]
    return ControlResult(texts, ids, model_lps, satisfied)


def _shared_constraint(avoid, constraints, pieces, eos) -> TokenDFA | None:
    out = constraints
    if avoid:
        ban = compile_tokens(to_bytes(banned(*avoid)), pieces, eos_token_id=eos)
        out = ban if out is None else out & ban
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


@torch.no_grad()
def _satisfied(text: str, words: Sequence[str], avoid: Sequence[str]) -> bool:
    ok = all(keyword(w).accepts_text(text) for w in words)
    return ok and (not avoid or banned(*avoid).accepts_text(text))

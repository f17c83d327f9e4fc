"""Pieces shared by the decoding loops: validated options, prompt batching with left padding,
next-token scoring through logits processors, sampling warpers and the result type."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from seqprob.core import LanguageModel, State
from seqprob.core.validation import check_float, check_int, describe
from seqprob.lm.processors import PROMPT_PAD, LogitsProcessor


@dataclasses.dataclass
class GenerationResult:
    """What :func:`seqprob.lm.generate` returns, one row per prompt.

    After a row's end (its EOS, included in ``lengths``) ``token_ids`` hold the pad id and
    ``logprobs``/``model_logprobs`` hold 0.
    """

    texts: list[str]          # the new tokens decoded, special tokens skipped
    token_ids: Tensor         # (batch, new_tokens) int64
    logprobs: Tensor          # (batch, new_tokens): log-prob under the decoding distribution
    model_logprobs: Tensor    # (batch, new_tokens): log-prob under the model alone
    lengths: Tensor           # (batch,) int64: new tokens up to and including EOS
    scores: Tensor            # (batch,): sum of logprobs; beam search: length-penalized score


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    """Validated decoding settings (see :func:`seqprob.lm.generate`)."""

    max_new_tokens: int
    min_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float
    num_beams: int
    length_penalty: float
    eos: tuple[int, ...]
    pad: int

    @classmethod
    def build(cls, lm: LanguageModel, *, max_new_tokens, min_new_tokens, do_sample, temperature,
              top_k, top_p, num_beams, length_penalty, eos_token_id) -> DecodingOptions:
        max_new = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        eos = _eos_ids(lm, eos_token_id)
        pad = getattr(lm.tokenizer, "pad_token_id", None)
        if pad is None:
            if not eos:
                raise ValueError("tokenizer: has neither a pad nor an EOS token, so prompts "
                                 "cannot be padded; set tokenizer.pad_token")
            pad = eos[0]
        num_beams = check_int(num_beams, "num_beams", minimum=1)
        if do_sample and num_beams > 1:
            raise ValueError(f"num_beams: beam search is deterministic here; with "
                             f"do_sample=True expected num_beams=1, got {num_beams}")
        return cls(
            max_new_tokens=max_new,
            min_new_tokens=check_int(min_new_tokens, "min_new_tokens", minimum=0,
                                     maximum=max_new),
            do_sample=bool(do_sample),
            temperature=check_float(temperature, "temperature", low=0.0, low_open=True),
            top_k=None if top_k is None else check_int(top_k, "top_k", minimum=1),
            top_p=check_float(top_p, "top_p", low=0.0, high=1.0, low_open=True),
            num_beams=num_beams,
            length_penalty=check_float(length_penalty, "length_penalty"),
            eos=eos, pad=int(pad))


def _eos_ids(lm: LanguageModel, eos_token_id: int | Sequence[int] | None) -> tuple[int, ...]:
    if eos_token_id is None:
        eos = lm.eos_token_ids
        if not eos:
            raise ValueError("eos_token_id: the tokenizer defines no EOS token; pass "
                             "eos_token_id=<id> or eos_token_id=() to always generate "
                             "max_new_tokens tokens")
        return eos
    ids = (eos_token_id,) if isinstance(eos_token_id, int) else tuple(eos_token_id)
    for i in ids:
        check_int(i, "eos_token_id", minimum=0, maximum=lm.vocab_size - 1)
    return tuple(int(i) for i in ids)


def encode_prompts(lm: LanguageModel, prompts: Sequence[str] | Sequence[Sequence[int]],
                   options: DecodingOptions) -> tuple[Tensor, Tensor]:
    """Left-padded ``(batch, length)`` ids and mask for texts or token-id lists."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError(f"prompts: expected a non-empty list of strings or of token-id "
                         f"lists, got {describe(prompts)}")
    rows = [_encode_one(lm, p, i) for i, p in enumerate(prompts)]
    length = max(len(r) for r in rows)
    context = lm.context_length
    if context is not None and length + options.max_new_tokens > context:
        raise ValueError(f"prompts: the longest prompt has {length} tokens; with max_new_tokens="
                         f"{options.max_new_tokens} that exceeds the model's context of {context}")
    ids = torch.full((len(rows), length), options.pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, length - len(row):] = 1
    return ids.to(lm.device), mask.to(lm.device)


def _encode_one(lm: LanguageModel, prompt: str | Sequence[int], i: int) -> list[int]:
    if isinstance(prompt, str):
        row = list(lm.tokenizer.encode(prompt))
    elif isinstance(prompt, Sequence) and all(isinstance(t, int) for t in prompt):
        row = [int(t) for t in prompt]
    else:
        raise ValueError(f"prompts[{i}]: expected a string or a list of token ids, got "
                         f"{describe(prompt)}")
    if not row:
        raise ValueError(f"prompts[{i}]: is empty after tokenization; give at least one token "
                         f"(e.g. the BOS id {getattr(lm.tokenizer, 'bos_token_id', None)})")
    if min(row) < 0 or max(row) >= lm.vocab_size:
        raise ValueError(f"prompts[{i}]: token ids must lie in [0, {lm.vocab_size}), got "
                         f"[{min(row)}, {max(row)}]")
    return row


class Scorer:
    """Next-token log-probabilities of each row: the model's, then each processor's in turn
    (renormalized after each), with EOS forbidden before ``min_new_tokens``. The processors
    see ``prompt_ids`` with the positions outside ``prompt_mask`` (left padding) set to -1."""

    def __init__(self, processors: Sequence[LogitsProcessor], options: DecodingOptions,
                 prompt_ids: Tensor, prompt_mask: Tensor):
        for i, p in enumerate(processors):
            if not isinstance(p, LogitsProcessor):
                raise TypeError(f"logits_processors[{i}]: expected a LogitsProcessor, got "
                                f"{describe(p)}")
        self.processors = tuple(processors)
        self.options = options
        prompt_ids = prompt_ids.masked_fill(~prompt_mask.bool(), PROMPT_PAD)
        self.states = [p.init_state(prompt_ids, options.max_new_tokens) for p in processors]
        self._eos = torch.tensor(options.eos, dtype=torch.long, device=prompt_ids.device)

    def __call__(self, logits: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """``logits`` ``(rows, vocab)`` -> (decoding log-probs, model log-probs), both
        ``(rows, vocab)``."""
        model_lp = torch.log_softmax(logits.float(), dim=-1)
        lp = model_lp
        if step < self.options.min_new_tokens and self._eos.numel():
            lp = torch.log_softmax(lp.index_fill(1, self._eos, float("-inf")), dim=-1)
        for processor, state in zip(self.processors, self.states, strict=True):
            lp = torch.log_softmax(processor.process(lp, state), dim=-1)
        if self.processors:
            dead = torch.isnan(lp).all(-1)
            if bool(dead.any()):
                rows = dead.nonzero()[:, 0].tolist()
                raise ValueError(f"logits_processors: every token is forbidden at new token "
                                 f"{step} for rows {rows[:10]}")
        return lp, model_lp

    def advance(self, tokens: Tensor, index: Tensor | None = None) -> None:
        """Reorder the processor states by ``index`` (beam search), then append ``tokens``."""
        states: list[State] = self.states
        if index is not None:
            states = [s.reorder(index) for s in states]
        self.states = [p.advance(s, tokens) for p, s in zip(self.processors, states, strict=True)]


def warp(lp: Tensor, options: DecodingOptions) -> Tensor:
    """Temperature, then top-k, then top-p (nucleus) on log-probs ``(rows, vocab)``;
    renormalized."""
    if options.temperature != 1.0:
        lp = torch.log_softmax(lp / options.temperature, dim=-1)
    if options.top_k is not None and options.top_k < lp.shape[-1]:
        kth = lp.topk(options.top_k, dim=-1).values[:, -1:]                        # (R 1)
        lp = lp.masked_fill(lp < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_lp, order = lp.sort(dim=-1)                                # (R V), ascending
        tail_mass = sorted_lp.exp().cumsum(-1)          # mass of this token and less probable ones
        drop_sorted = tail_mass <= 1.0 - options.top_p
        drop_sorted[:, -1] = False                                        # keep the top token
        drop = torch.empty_like(drop_sorted).scatter(1, order, drop_sorted)
        lp = lp.masked_fill(drop, float("-inf"))
    return torch.log_softmax(lp, dim=-1)


def length_normalized(score: Tensor, length: int, penalty: float) -> Tensor:
    """Beam score: summed log-prob over ``length ** penalty``."""
    return score / math.pow(length, penalty)

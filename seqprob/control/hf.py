"""Control as a ``transformers.LogitsProcessor``: seqprob's processors inside
``model.generate`` (imported only by :func:`seqprob.control.logits_processor`).

transformers hands a logits processor only ``input_ids`` ``(rows, length)`` and the scores,
and beam search reorders rows between calls, so the state of a row (DFA state, HMM prior,
tokens so far) is looked up by the row's token history: each call keeps the states of its
rows keyed by their histories, and a row of the next call continues the state of its history
without its last token, advanced by that token. Rows whose parent history is unknown (the
first call of a ``generate``) start from their prompt: leading pad tokens are its left padding
(transformers passes no attention mask to processors). Rows that have emitted an end-of-text
token are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import LogitsProcessor as _TransformersLogitsProcessor

from seqprob.core.validation import check_int
from seqprob.lm.processors import PROMPT_PAD, LogitsProcessor


class ControlLogitsProcessor(_TransformersLogitsProcessor):
    """``processors`` (seqprob :class:`~seqprob.lm.processors.LogitsProcessor` objects,
    applied in order, renormalized after each) for ``generate`` calls of at most
    ``max_new_tokens`` new tokens."""

    def __init__(self, processors: Sequence[LogitsProcessor], *, max_new_tokens: int,
                 eos_token_ids: Sequence[int] = (), pad_token_id: int | None = None):
        self.processors = tuple(processors)
        self.max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
        self.eos = torch.tensor(list(eos_token_ids), dtype=torch.long)
        self.pad_token_id = pad_token_id
        self._rows: dict[tuple[int, ...], int] = {}  # history -> row of the last call
        self._states: list = []
        self._done = torch.zeros(0, dtype=torch.bool)

    def _start(self, input_ids: Tensor) -> None:
        """States of fresh rows: ``input_ids`` are the prompts."""
        prompt = input_ids
        if self.pad_token_id is not None:
            padding = (input_ids != self.pad_token_id).cumsum(1) == 0    # leading pads
            prompt = input_ids.masked_fill(padding, PROMPT_PAD)
        self._states = [p.init_state(prompt, self.max_new_tokens) for p in self.processors]
        self._done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def _continue(self, input_ids: Tensor, parents: list[int]) -> None:
        """States of rows that extend the last call's rows ``parents`` by one token."""
        index = torch.tensor(parents, dtype=torch.long, device=input_ids.device)
        tokens = input_ids[:, -1]
        self._states = [p.advance(s.reorder(index), tokens)
                        for p, s in zip(self.processors, self._states, strict=True)]
        self._done = self._done[index] | torch.isin(tokens, self.eos.to(tokens.device))

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        histories = [tuple(row) for row in input_ids.tolist()]
        parents = [self._rows.get(h[:-1]) for h in histories]
        if self._rows and all(p is not None for p in parents):
            self._continue(input_ids, parents)
        else:
            self._start(input_ids)
        self._rows = {h: i for i, h in enumerate(histories)}
        live = torch.nonzero(~self._done).squeeze(1)
        if live.numel() == 0:
            return scores
        lp = torch.log_softmax(scores[live].float(), dim=-1)
        for processor, state in zip(self.processors, self._states, strict=True):
            lp = torch.log_softmax(processor.process(lp, state.reorder(live)), dim=-1)
        return scores.index_put((live,), lp.to(scores.dtype))

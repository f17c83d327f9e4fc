"""Logits processors: how constraints and attributes plug into the decoding loop.

A processor keeps its per-row memory in a :class:`~seqprob.core.State` (tensors, batch
first), so beam search reorders it with ``state.reorder(index)`` like the model's own state;
nothing is keyed by prefixes in dicts.
"""

from __future__ import annotations

import abc

from torch import Tensor

from seqprob.core import State


class LogitsProcessor(abc.ABC):
    """Reweights the next-token distribution of each row.

    The loop calls ``init_state`` once, then at every step ``process`` (before sampling or
    beam scoring) and ``advance`` with the chosen tokens.
    """

    @abc.abstractmethod
    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> State:
        """State for ``prompt_ids`` ``(batch, prompt_length)`` (left-padded, int64) and the
        budget of new tokens."""

    @abc.abstractmethod
    def process(self, log_probs: Tensor, state: State) -> Tensor:
        """``log_probs`` ``(batch, vocab)``: the model's normalized next-token log-probabilities
        (after earlier processors). Returns unnormalized log-scores ``(batch, vocab)``;
        ``-inf`` forbids a token. The loop renormalizes."""

    @abc.abstractmethod
    def advance(self, state: State, tokens: Tensor) -> State:
        """The state after each row appended ``tokens`` ``(batch,)``."""

"""Logits processors: how constraints and attributes plug into the decoding loop.

A processor keeps its per-row memory in a :class:`~seqprob.core.State` (tensors, batch
first), so beam search reorders it with ``state.reorder(index)`` like the model's own state;
nothing is keyed by prefixes in dicts.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from seqprob.core import State
from seqprob.core.validation import check_int

PROMPT_PAD = -1  # the id that marks a prompt's left padding in ``init_state``'s prompt_ids


class LogitsProcessor(abc.ABC):
    """Reweights the next-token distribution of each row.

    The loop calls ``init_state`` once, then at every step ``process`` (before sampling or
    beam scoring) and ``advance`` with the chosen tokens.
    """

    @abc.abstractmethod
    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> State:
        """State for ``prompt_ids`` ``(batch, prompt_length)`` (int64, left-padded with
        ``PROMPT_PAD`` = -1) and the budget of new tokens."""

    @abc.abstractmethod
    def process(self, log_probs: Tensor, state: State) -> Tensor:
        """``log_probs`` ``(batch, vocab)``: the model's normalized next-token log-probabilities
        (after earlier processors). Returns unnormalized log-scores ``(batch, vocab)``;
        ``-inf`` forbids a token. The loop renormalizes."""

    @abc.abstractmethod
    def advance(self, state: State, tokens: Tensor) -> State:
        """The state after each row appended ``tokens`` ``(batch,)``."""


@dataclasses.dataclass
class RecentTokens(State):
    """The last ``window`` tokens of each row (prompt included)."""

    tokens: Tensor  # (batch, window) int64

    def shifted(self, new: Tensor) -> RecentTokens:
        """The window after ``new`` ``(batch,)``: the oldest token drops out."""
        return RecentTokens(torch.cat([self.tokens[:, 1:], new[:, None]], dim=1))


class BannedSequences(LogitsProcessor):
    """Forbids token sequences: a sequence's last token gets ``-inf`` whenever the row's
    latest tokens equal the rest of it (a one-token sequence is always forbidden).

    ``sequences``: token-id sequences, e.g. ``[tok.encode(" darn", add_special_tokens=False)]``.
    The prompt's tail counts as history; its left padding (-1) matches no token.
    """

    def __init__(self, sequences: Sequence[Sequence[int]]):
        seqs = [tuple(int(t) for t in s) for s in sequences]
        if not seqs or any(not s or min(s) < 0 for s in seqs):
            raise ValueError(f"sequences: expected a non-empty list of non-empty sequences of "
                             f"token ids >= 0, got {sequences!r}")
        self.sequences = seqs
        self.window = max(len(s) for s in seqs) - 1
        self._single = sorted({s[0] for s in seqs if len(s) == 1})
        self._multi = [(torch.tensor(s[:-1]), s[-1]) for s in seqs if len(s) > 1]

    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> RecentTokens:
        batch, length = prompt_ids.shape
        tail = prompt_ids[:, max(length - self.window, 0):]                      # (B <=W)
        fill = prompt_ids.new_full((batch, self.window - tail.shape[1]), -1)
        return RecentTokens(torch.cat([fill, tail], dim=1))                       # (B W)

    def process(self, log_probs: Tensor, state: RecentTokens) -> Tensor:
        banned = torch.zeros_like(log_probs, dtype=torch.bool)                    # (B V)
        banned[:, self._single] = True
        for prefix, last in self._multi:
            recent = state.tokens[:, self.window - len(prefix):]                  # (B len-1)
            banned[:, last] |= (recent == prefix.to(recent.device)).all(1)
        return log_probs.masked_fill(banned, float("-inf"))

    def advance(self, state: RecentTokens, tokens: Tensor) -> RecentTokens:
        if self.window == 0:
            return state
        return state.shifted(tokens)


class NoRepeatNGram(LogitsProcessor):
    """Forbids a token that would repeat an ``n``-gram of the new tokens (the prompt does not
    count), unless every token still allowed would: then the row is left as it came.

    Placed after a constraint processor it therefore never removes the last tokens that keep
    the constraint satisfiable (the constraint's mask stays exact and its guarantee holds);
    loops are cut wherever the constraint leaves another way on."""

    def __init__(self, n: int):
        self.n = check_int(n, "n", minimum=2)

    def init_state(self, prompt_ids: Tensor, max_new_tokens: int) -> RecentTokens:
        return RecentTokens(prompt_ids.new_full((prompt_ids.shape[0], max_new_tokens), -1))

    def process(self, log_probs: Tensor, state: RecentTokens) -> Tensor:
        tokens, n = state.tokens, self.n                                          # (B T)
        if tokens.shape[1] < n:  # too few new tokens for an n-gram to repeat
            return log_probs
        grams = tokens.unfold(1, n, 1)                                            # (B T-n+1 n)
        tail = tokens[:, tokens.shape[1] - (n - 1):]                              # (B n-1)
        seen = (grams[:, :, :-1] == tail[:, None, :]).all(2) & (tail >= 0).all(1, keepdim=True)
        banned = torch.zeros_like(log_probs, dtype=torch.bool)                    # (B V)
        rows, at = seen.nonzero(as_tuple=True)
        banned[rows, grams[rows, at, -1]] = True
        allowed = torch.isfinite(log_probs)
        banned &= (allowed & ~banned).any(1, keepdim=True)  # never the last allowed tokens
        return log_probs.masked_fill(banned, float("-inf"))

    def advance(self, state: RecentTokens, tokens: Tensor) -> RecentTokens:
        return state.shifted(tokens)

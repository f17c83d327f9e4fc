"""The contract of token-level language models (transformers adapters, Mamba LM, ...).

A :class:`LanguageModel` is a :class:`SequenceModel` over token ids: ``forward`` takes
``input_ids`` of shape ``(batch, length)`` (int64) and returns next-token logits
``(batch, length, vocab)``; ``step`` takes ``(batch,)`` ids and returns ``(batch, vocab)``.
Decoding (``seqprob.lm.generate``), HMM distillation and AutoTimes use only this class.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import torch
from torch import Tensor

from seqprob.core.contract import SequenceModel, State


@dataclasses.dataclass
class LMOutput:
    """What one run of a language model yields."""

    logits: Tensor   # (batch, length, vocab), fp32
    hidden: Tensor   # (batch, length, hidden_size): the last layer's hidden states
    state: State     # continues the sequence (KV cache, recurrent state, ...)


class LanguageModel(SequenceModel):
    """A token-level sequence model with a tokenizer.

    ``tokenizer`` follows the Hugging Face tokenizer interface: ``encode(text,
    add_special_tokens=...)``, ``decode(ids, skip_special_tokens=...)``, ``eos_token_id``,
    ``bos_token_id``, ``pad_token_id``, ``len(tokenizer)``.
    """

    tokenizer: Any

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of rows of the output logits."""

    @property
    @abc.abstractmethod
    def hidden_size(self) -> int:
        """Width of the input embeddings and last hidden states."""

    @property
    def context_length(self) -> int | None:
        """Most positions one sequence may hold (prompt and new tokens); ``None``: unbounded."""
        return None

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Tokens that end a generated sequence (the tokenizer's EOS unless overridden)."""
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return () if eos is None else (int(eos),)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    @abc.abstractmethod
    def embed(self, input_ids: Tensor) -> Tensor:
        """Input embeddings ``(batch, length, hidden_size)`` of ``input_ids`` ``(batch, len)``."""

    @abc.abstractmethod
    def run(self, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None,
            state: State | None = None, attention_mask: Tensor | None = None) -> LMOutput:
        """Run over ``input_ids`` ``(batch, length)`` or ``inputs_embeds`` ``(batch, length,
        hidden_size)``, continuing from ``state``. ``attention_mask`` ``(batch, length)``
        marks real tokens (1) and left padding (0) of this call's positions."""

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x``: ``(batch, length)`` ids -> logits ``(batch, length, vocab)`` and state."""
        out = self.run(input_ids=x, state=state)
        return out.logits, out.state

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """``x_t``: ``(batch,)`` ids -> logits ``(batch, vocab)`` and state."""
        out = self.run(input_ids=x_t[:, None], state=state)
        return out.logits[:, 0], out.state

    def prefill(self, input_ids: Tensor, *, attention_mask: Tensor | None = None,
                state: State | None = None) -> tuple[Tensor, State]:
        """What decoding needs from a prompt ``(batch, length)``: the next-token logits
        ``(batch, vocab)`` after its last position, and the state. Subclasses may skip the
        other positions' logits and the hidden states."""
        out = self.run(input_ids=input_ids, state=state, attention_mask=attention_mask)
        return out.logits[:, -1], out.state

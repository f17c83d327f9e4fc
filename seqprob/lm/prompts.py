"""Prompts as an instruction-tuned LM sees them: one user turn of its chat template, and the
varied instruction set shipped with the package (HMM distillation samples continuations of it,
so the HMM learns the distribution that chat decoding draws from)."""

from __future__ import annotations

import functools
from importlib import resources

from seqprob.core.validation import describe


def has_chat_template(tokenizer) -> bool:
    """Whether ``tokenizer`` defines a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, text: str) -> str:
    """``text`` as a user turn of ``tokenizer``'s chat template with the assistant's turn
    opened (plain ``text`` when the tokenizer has no template)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a string, got {describe(text)}")
    if not has_chat_template(tokenizer):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


@functools.cache
def instructions() -> tuple[str, ...]:
    """The shipped instruction set (``seqprob/lm/data/instructions.txt``, one per line):
    several hundred everyday requests written for seqprob (descriptions, short stories,
    explanations, advice, dialogue, ...), copied from no benchmark."""
    text = resources.files("seqprob.lm").joinpath("data/instructions.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())

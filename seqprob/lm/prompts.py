"""Prompts as an instruction-tuned LM sees them: one user turn of its chat template, and the
varied instruction set shipped with the package (HMM distillation samples continuations of it,
so the HMM learns the distribution that chat decoding draws from)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

from seqprob.core.validation import describe


def has_chat_template(tokenizer) -> bool:
    """Whether ``tokenizer`` defines a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def chat_prompt(tokenizer, text: str, history: Sequence[tuple[str, str]] = ()) -> str:
    """``text`` as a user turn of ``tokenizer``'s chat template with the assistant's turn
    opened, after the earlier ``(user, assistant)`` turns of ``history`` (few-shot examples).
    Without a template: the turns' texts, one a line, then ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a string, got {describe(text)}")
    turns = list(history)
    if not all(isinstance(t, tuple) and len(t) == 2 and all(isinstance(x, str) for x in t)
               for t in turns):
        raise TypeError(f"history: expected (user, assistant) pairs of strings, got "
                        f"{describe(history)}")
    if not has_chat_template(tokenizer):
        return "".join(f"{user}\n{reply}\n" for user, reply in turns) + text
    messages = [{"role": role, "content": content} for pair in turns
                for role, content in zip(("user", "assistant"), pair, strict=True)]
    return tokenizer.apply_chat_template([*messages, {"role": "user", "content": text}],
                                         tokenize=False, add_generation_prompt=True)


@functools.cache
def instructions() -> tuple[str, ...]:
    """The shipped instruction set (``seqprob/lm/data/instructions.txt``, one per line):
    several hundred everyday requests written for seqprob (descriptions, short stories,
    explanations, advice, dialogue, ...), copied from no benchmark."""
    text = resources.files("seqprob.lm").joinpath("data/instructions.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())

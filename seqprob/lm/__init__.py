"""Language-model adapters behind one contract, one batched decoding loop (greedy, sampling,
beam search) and ancestral sampling on it; chat prompts and the shipped instruction set.

transformers is imported only when a model is built or loaded (extra ``seqprob[lm]``).
"""

from seqprob.lm.decoding import GenerationResult
from seqprob.lm.generate import generate
from seqprob.lm.hf import KVState, TransformersLM
from seqprob.lm.loading import KNOWN_MODELS, load
from seqprob.lm.processors import (
    PROMPT_PAD,
    BannedSequences,
    LogitsProcessor,
    NoRepeatNGram,
    RecentTokens,
)
from seqprob.lm.prompts import chat_prompt, has_chat_template, instructions
from seqprob.lm.sampling import Samples, sample
from seqprob.lm.tiny import byte_tokenizer, tiny_lm

__all__ = [
    "KNOWN_MODELS",
    "PROMPT_PAD",
    "BannedSequences",
    "GenerationResult",
    "KVState",
    "LogitsProcessor",
    "NoRepeatNGram",
    "RecentTokens",
    "Samples",
    "TransformersLM",
    "byte_tokenizer",
    "chat_prompt",
    "generate",
    "has_chat_template",
    "instructions",
    "load",
    "sample",
    "tiny_lm",
]

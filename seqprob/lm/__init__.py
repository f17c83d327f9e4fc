"""Language-model adapters behind one contract, and one batched decoding loop.

transformers is imported only when a model is built or loaded (extra ``seqprob[lm]``).
"""

from seqprob.lm.decoding import GenerationResult
from seqprob.lm.generate import generate
from seqprob.lm.hf import KVState, TransformersLM
from seqprob.lm.loading import KNOWN_MODELS, load
from seqprob.lm.processors import PROMPT_PAD, BannedSequences, LogitsProcessor, RecentTokens
from seqprob.lm.tiny import byte_tokenizer, tiny_lm

__all__ = [
    "KNOWN_MODELS",
    "PROMPT_PAD",
    "BannedSequences",
    "GenerationResult",
    "KVState",
    "LogitsProcessor",
    "RecentTokens",
    "TransformersLM",
    "byte_tokenizer",
    "generate",
    "load",
    "tiny_lm",
]

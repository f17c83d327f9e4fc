"""Language-model adapters behind one contract, and one batched decoding loop."""

from seqprob.lm.processors import LogitsProcessor

__all__ = ["LogitsProcessor"]

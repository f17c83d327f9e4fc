"""A tiny randomly initialized Llama with a byte-level tokenizer, built offline in
milliseconds: the language model of fast unit tests across seqprob."""

from __future__ import annotations

import torch

from seqprob.core.validation import check_int
from seqprob.lm.hf import TransformersLM, require_transformers

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2; the 256 byte tokens follow


def byte_tokenizer():
    """A ``PreTrainedTokenizerFast`` over the 256 bytes plus ``<pad>``, ``<s>`` (prepended to
    every encoding) and ``</s>``: any text round-trips, vocabulary 259."""
    transformers = require_transformers()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *alphabet])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def tiny_lm(*, random_state: int = 0, num_layers: int = 2, hidden_size: int = 32,
            num_heads: int = 4, num_kv_heads: int = 2, context_length: int = 256) -> TransformersLM:
    """A random ``LlamaForCausalLM`` (grouped-query attention) over :func:`byte_tokenizer`.

    The same ``random_state`` gives the same weights; the global torch RNG is left untouched.
    """
    for name, value in (("random_state", random_state), ("num_layers", num_layers),
                        ("hidden_size", hidden_size), ("num_heads", num_heads),
                        ("num_kv_heads", num_kv_heads), ("context_length", context_length)):
        check_int(value, name, minimum=0 if name == "random_state" else 1)
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(f"num_heads: expected a divisor of hidden_size={hidden_size} and a "
                         f"multiple of num_kv_heads={num_kv_heads}, got {num_heads}")
    transformers = require_transformers()
    tokenizer = byte_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads, max_position_embeddings=context_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = transformers.LlamaForCausalLM(config)
    return TransformersLM(model.eval(), tokenizer)

"""Tiny random transformers of several architectures over the byte tokenizer, for tests."""

from __future__ import annotations

import torch

from seqprob.lm import TransformersLM, byte_tokenizer, tiny_lm


def tiny_gpt2(random_state: int = 0) -> TransformersLM:
    """GPT-2 (learned absolute positions, fused attention projection)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = byte_tokenizer()
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, initializer_range=0.3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = GPT2LMHeadModel(config)
    return TransformersLM(model.eval(), tok)


def tiny_qwen2(random_state: int = 0) -> TransformersLM:
    """Qwen2 (biased q/k/v projections, grouped-query attention)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         initializer_range=0.3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model = Qwen2ForCausalLM(config)
    return TransformersLM(model.eval(), tok)


ARCHITECTURES = {"llama": tiny_lm, "gpt2": tiny_gpt2, "qwen2": tiny_qwen2}

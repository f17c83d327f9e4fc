"""seqprob.lm.sample (ancestral sampling on generate's loop), chat prompts and the shipped
instruction set."""

import pytest
import torch

from seqprob.lm import byte_tokenizer, chat_prompt, generate, instructions, sample, tiny_lm

CHAT = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


def test_same_tokens_as_generate_with_the_same_seed(lm):
    prompts = ["ab", "cde", "f"]
    s = sample(lm, prompts, 5, 12, random_state=7)
    rows = [prompts[r % 3] for r in range(5)]
    g = generate(lm, rows, 12, do_sample=True, random_state=7)      # the oracle: the decoder
    n = g.token_ids.shape[1]
    assert s.token_ids.shape == (5, 12)
    assert torch.equal(s.token_ids[:, :n], g.token_ids)
    assert bool((s.token_ids[:, n:] == lm.tokenizer.pad_token_id).all())
    assert torch.equal(s.lengths, g.lengths)


def test_keep_hidden_keeps_the_tokens_and_matches_a_full_run(lm):
    plain = sample(lm, None, 4, 8, random_state=1)
    s = sample(lm, None, 4, 8, keep_hidden=True, random_state=1)
    assert torch.equal(plain.token_ids, s.token_ids)
    assert s.hidden.shape == (4, 8, lm.hidden_size) and s.hidden.dtype == torch.float32
    # hidden[t] is the LM's last hidden state on the sampled token t (KV cache == full run)
    ids = torch.cat([torch.full((4, 1), lm.tokenizer.bos_token_id), s.token_ids], 1)
    full = lm.run(input_ids=ids).hidden[:, 1:]
    valid = torch.arange(8)[None] < s.lengths[:, None]
    torch.testing.assert_close(full[valid].float(), s.hidden[valid], atol=1e-4, rtol=1e-4)


def test_rows_stop_at_eos(lm):
    eos = int(sample(lm, None, 1, 1, random_state=0).token_ids[0, 0])  # often the first draw
    s = sample(lm, None, 16, 10, eos_token_id=eos, random_state=0)
    for row, n in zip(s.token_ids, s.lengths.tolist(), strict=True):
        hit = (row[:n] == eos).nonzero()
        if len(hit):
            assert int(hit[0]) == n - 1                     # the first EOS ends the row
            assert bool((row[n:] == lm.tokenizer.pad_token_id).all())
        else:
            assert n == 10
    assert bool((s.lengths < 10).any())


def test_bf16_autocast(lm):
    s = sample(lm, ["hi"], 3, 5, keep_hidden=True, autocast_dtype="bfloat16", random_state=2)
    assert s.hidden.dtype == torch.float32 and s.hidden.shape == (3, 5, lm.hidden_size)
    assert bool(((s.token_ids >= 0) & (s.token_ids < lm.vocab_size)).all())


def test_bad_input(lm):
    with pytest.raises(TypeError, match="lm"):
        sample("gpt", None, 2, 3)
    with pytest.raises(ValueError, match="prompts"):
        sample(lm, "a string", 2, 3)
    with pytest.raises(ValueError, match="n"):
        sample(lm, None, 0, 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(lm, None, 2, 0)
    with pytest.raises(ValueError, match="autocast_dtype"):
        sample(lm, None, 2, 3, autocast_dtype="int8")


def test_chat_prompt_uses_the_template_when_there_is_one():
    tok = byte_tokenizer()
    assert chat_prompt(tok, "Describe a kitchen.") == "Describe a kitchen."
    tok.chat_template = CHAT
    assert chat_prompt(tok, "Describe a kitchen.") == "<|user|>Describe a kitchen.<|assistant|>"
    with pytest.raises(TypeError, match="text"):
        chat_prompt(tok, ["x"])
    shot = [("Describe a hall.", "Long.")]
    assert chat_prompt(tok, "Describe a kitchen.", shot) == (
        "<|user|>Describe a hall.<|assistant|>Long.<|user|>Describe a kitchen.<|assistant|>")
    tok.chat_template = None
    assert chat_prompt(tok, "Describe a kitchen.", shot) == (
        "Describe a hall.\nLong.\nDescribe a kitchen.")
    with pytest.raises(TypeError, match="history: expected"):
        chat_prompt(tok, "x", ["a"])


def test_the_instruction_set_is_large_and_varied():
    texts = instructions()
    assert len(texts) >= 400 and len(set(texts)) == len(texts)
    openings = {" ".join(t.split()[:2]) for t in texts}
    assert len(openings) >= 30                              # many kinds of request
    assert all(5 <= len(t) <= 200 for t in texts)

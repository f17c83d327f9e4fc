"""seqprob.control.logits_processor inside transformers' model.generate: the same tokens as
seqprob's own loop under greedy decoding, and the constraint met under sampling and beam
search, batched with left padding."""

import pytest
import torch

from seqprob.control import TokenAttribute, generate, logits_processor
from seqprob.control.words import keyword, word_count
from seqprob.hmm.distill import distill
from seqprob.lm import tiny_lm

pytest.importorskip("transformers")
from transformers import LogitsProcessorList

TINY = dict(n_hidden=8, seq_len=16, batch_size=16, n_init_batches=2, n_em_steps=2,
            n_held_out=16)
PROMPTS = ["The", "A longer prompt"]  # different lengths: the first row is left-padded
BUDGET = 16


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


@pytest.fixture(scope="module")
def hmm(lm):
    return distill(lm, verbose=False, **TINY).hmm


def hf_generate(lm, processor, **kwargs):
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out = lm.model.generate(**enc, logits_processor=LogitsProcessorList([processor]),
                            max_new_tokens=BUDGET, pad_token_id=tok.pad_token_id,
                            eos_token_id=tok.eos_token_id, **kwargs)
    new = out[:, enc.input_ids.shape[1]:]
    rows = []
    for row in new.tolist():
        cut = row.index(tok.eos_token_id) if tok.eos_token_id in row else len(row)
        rows.append(row[:cut])
    return rows


def test_greedy_gives_the_tokens_of_seqprobs_loop(lm, hmm):
    weights = -torch.rand(lm.vocab_size, generator=torch.Generator().manual_seed(0)) * 3
    attribute = TokenAttribute(weights)
    ours = generate(lm, PROMPTS, hmm, keywords=[["dog"]] * 2, attributes=attribute,
                    max_new_tokens=BUDGET)
    proc = logits_processor(lm, ["dog"], attributes=attribute, hmm=hmm, max_new_tokens=BUDGET)
    theirs = hf_generate(lm, proc, do_sample=False)
    eos = lm.tokenizer.eos_token_id
    assert theirs == [[t for t in row if t != eos] for row in ours.token_ids]
    assert ours.satisfied == [True, True]


@pytest.mark.parametrize("kwargs", [dict(do_sample=True, top_k=0),
                                    dict(num_beams=3, do_sample=False)])
def test_constraint_met_under_sampling_and_beam_search(lm, hmm, kwargs):
    proc = logits_processor(lm, ["dog", "sun"], hmm=hmm, max_new_tokens=BUDGET, max_words=6)
    for seed in range(2):
        torch.manual_seed(seed)
        for row in hf_generate(lm, proc, **kwargs):
            text = lm.tokenizer.decode(row)
            assert keyword("dog").accepts_text(text) and keyword("sun").accepts_text(text)
            assert word_count(0, 6).accepts_text(text), text


def test_nothing_to_control_is_refused(lm, hmm):
    with pytest.raises(ValueError, match="nothing to control"):
        logits_processor(lm, hmm=hmm)
    with pytest.raises(ValueError, match=r"keywords\[0\]: expected a non-empty list"):
        logits_processor(lm, [], hmm=hmm)

"""TransformersLM: logits, hidden states and the KV cache against the wrapped model itself."""

from __future__ import annotations

import copy
import pickle

import joblib
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.lm import KVState, TransformersLM, byte_tokenizer, tiny_lm
from tests.lm_models import ARCHITECTURES

_LLAMA, _GPT2 = tiny_lm(), ARCHITECTURES["gpt2"]()


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def lm(request):
    return ARCHITECTURES[request.param]()


def _left_pad(rows, pad=0):
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r):] = torch.tensor(r)
        mask[i, length - len(r):] = 1
    return ids, mask


@torch.no_grad()
def test_logits_and_hidden_equal_the_wrapped_model(lm):
    ids = torch.tensor([lm.tokenizer.encode("the cat sat")])
    out = lm.run(input_ids=ids)
    ref = lm.model(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(out.logits, ref.logits.float())
    torch.testing.assert_close(out.hidden, ref.hidden_states[-1])
    assert out.logits.dtype == torch.float32
    assert out.hidden.shape == (1, ids.shape[1], lm.hidden_size)
    assert out.logits.shape == (1, ids.shape[1], lm.vocab_size)


@torch.no_grad()
@settings(max_examples=5, deadline=None)
@given(lengths=st.lists(st.integers(1, 7), min_size=2, max_size=4),
       new=st.lists(st.integers(3, 258), min_size=1, max_size=3))
def test_left_padded_rows_equal_each_row_alone(lengths, new):
    for lm in (_LLAMA, _GPT2):
        g = torch.Generator().manual_seed(sum(lengths))
        rows = [torch.randint(3, 259, (n,), generator=g).tolist() for n in lengths]
        ids, mask = _left_pad(rows)
        batch = lm.run(input_ids=ids, attention_mask=mask)
        cont = torch.tensor(new).repeat(len(rows), 1)                     # (B N)
        batch_next = lm.run(input_ids=cont, state=batch.state)
        for i, row in enumerate(rows):
            alone = lm.run(input_ids=torch.tensor([row]))
            torch.testing.assert_close(batch.logits[i, -len(row):], alone.logits[0],
                                       rtol=1e-4, atol=1e-4)
            alone_next = lm.run(input_ids=cont[:1], state=alone.state)
            torch.testing.assert_close(batch_next.logits[i], alone_next.logits[0],
                                       rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(batch_next.hidden[i], alone_next.hidden[0],
                                       rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_chunked_prefill_of_a_padded_batch_equals_whole(lm):
    ids, mask = _left_pad([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]])
    whole = lm.run(input_ids=ids, attention_mask=mask)
    first = lm.run(input_ids=ids[:, :3], attention_mask=mask[:, :3])
    second = lm.run(input_ids=ids[:, 3:], attention_mask=mask[:, 3:], state=first.state)
    real = mask.bool()
    got = torch.cat([first.logits, second.logits], 1)
    torch.testing.assert_close(got[real], whole.logits[real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(second.state.mask, whole.state.mask)


@torch.no_grad()
def test_inputs_embeds_run_equals_input_ids_run(lm):
    ids = torch.tensor([[1, 50, 60, 70], [1, 80, 90, 100]])
    by_ids = lm.run(input_ids=ids)
    embeds = lm.embed(ids)
    assert embeds.shape == (2, 4, lm.hidden_size)
    by_embeds = lm.run(inputs_embeds=embeds)
    torch.testing.assert_close(by_embeds.logits, by_ids.logits)
    torch.testing.assert_close(by_embeds.hidden, by_ids.hidden)
    step = lm.run(input_ids=ids[:, -1:], state=lm.run(inputs_embeds=embeds[:, :-1]).state)
    torch.testing.assert_close(step.logits[:, 0], by_ids.logits[:, -1], rtol=1e-4, atol=1e-5)


def test_init_state_shapes_match_a_run(lm):
    with torch.no_grad():
        state = lm.run(input_ids=torch.tensor([[1, 5, 6]] * 2)).state
    empty = lm.init_state(2)
    assert isinstance(empty, KVState) and empty.length == 0 and state.length == 3
    for e, s in zip(empty.keys + empty.values, state.keys + state.values, strict=True):
        assert e.shape[:2] == s.shape[:2] and e.shape[3] == s.shape[3] and e.dtype == s.dtype
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32


def test_tiny_lm_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = tiny_lm(random_state=3), tiny_lm(random_state=3), tiny_lm(random_state=4)
    assert torch.equal(torch.rand(1), before)
    wa, wb, wc = (m.model.lm_head.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_byte_tokenizer_round_trips_any_text():
    tok = byte_tokenizer()
    text = "héllo wörld ✓ \n\t"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and len(tok) == 259
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_bad_inputs_name_the_argument():
    lm = _LLAMA
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        lm.run()
    with pytest.raises(ValueError, match="attention_mask"):
        lm.run(input_ids=torch.ones(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="context of 256"):
        lm.run(input_ids=torch.ones(1, 257, dtype=torch.long))
    with pytest.raises(ValueError, match="num_heads"):
        tiny_lm(hidden_size=30, num_heads=4)


def test_sliding_window_models_are_refused():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=259, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                           sliding_window=8)
    with pytest.raises(ValueError, match="sliding_attention"):
        TransformersLM(MistralForCausalLM(config), byte_tokenizer())


@torch.no_grad()
def test_prefill_gives_the_last_logits_of_run(lm):
    ids, mask = _left_pad([[5, 6, 7, 8], [9, 10]])
    logits, state = lm.prefill(ids, attention_mask=mask)
    out = lm.run(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(logits, out.logits[:, -1])
    for (name, a), (_, b) in zip(state.named_tensors(), out.state.named_tensors(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


@torch.no_grad()
def test_pickle_and_deepcopy_keep_outputs_ties_flags_and_hash(lm):
    ids = torch.tensor([lm.tokenizer.encode("the cat")])
    lm.run(input_ids=ids)  # installs transformers' output-capturing hooks (local closures)
    embeddings = lm.model.get_input_embeddings().weight
    embeddings.requires_grad_(False)
    try:
        for copied in (pickle.loads(pickle.dumps(lm)), copy.deepcopy(lm)):
            out, ref = copied.run(input_ids=ids), lm.run(input_ids=ids)
            assert torch.equal(out.logits, ref.logits) and torch.equal(out.hidden, ref.hidden)
            tied = lm.model.get_output_embeddings().weight is embeddings
            assert (copied.model.get_output_embeddings().weight
                    is copied.model.get_input_embeddings().weight) == tied
            assert not copied.model.get_input_embeddings().weight.requires_grad
            assert (copied.training, copied.model.training) == (lm.training, lm.model.training)
            assert joblib.hash(copied) == joblib.hash(lm)  # content, not memory addresses
    finally:
        embeddings.requires_grad_(True)


def test_pickle_keeps_bfloat16_weights_exact():
    lm = tiny_lm()
    lm.model.to(torch.bfloat16)
    copied = pickle.loads(pickle.dumps(lm))
    for (name, a), b in zip(lm.model.state_dict().items(), copied.model.state_dict().values(),
                            strict=True):
        assert b.dtype == torch.bfloat16 and torch.equal(a, b), name

"""seqprob.lm.generate against transformers' own generate, brute-force enumeration and a
teacher-forced forward pass, on tiny random models."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqprob.lm import BannedSequences, LogitsProcessor, NoRepeatNGram, generate, tiny_lm
from seqprob.lm.processors import RecentTokens
from tests.lm_models import ARCHITECTURES

PROMPTS = ["hello there", "hi", "a longer prompt here", "x"]
LLAMA = tiny_lm()


def hf_generate(lm, prompts, **kwargs):
    """transformers' generate on the same left-padded batch: the new tokens ``(batch, new)``."""
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(kwargs.pop("seed", 0))
    out = lm.model.generate(**enc, pad_token_id=tok.pad_token_id, **kwargs)
    return out[:, enc.input_ids.shape[1]:]


def frequent_token(lm, step=2):
    """A token greedy decoding emits at ``step`` for the first prompt: a realistic EOS."""
    return int(generate(lm, PROMPTS, step + 1, eos_token_id=()).token_ids[0, step])


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_greedy_equals_transformers(arch):
    lm = ARCHITECTURES[arch]()
    ours = generate(lm, PROMPTS, 10)
    assert torch.equal(ours.token_ids, hf_generate(lm, PROMPTS, max_new_tokens=10,
                                                    do_sample=False))
    assert ours.texts == [lm.tokenizer.decode(r, skip_special_tokens=True)
                          for r in ours.token_ids]


def test_greedy_stops_each_row_at_eos_like_transformers():
    eos = frequent_token(LLAMA)
    ours = generate(LLAMA, PROMPTS, 12, eos_token_id=eos)
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=12, do_sample=False, eos_token_id=eos)
    assert torch.equal(ours.token_ids, theirs)
    ended = ours.lengths < 12
    assert ended[0] and ours.lengths[0] <= 3
    assert (ours.token_ids[ended, ours.lengths[ended] - 1] == eos).all()
    after_end = torch.arange(ours.token_ids.shape[1]) >= ours.lengths[:, None]
    assert (ours.token_ids[after_end] == LLAMA.tokenizer.pad_token_id).all()
    assert (ours.logprobs[after_end] == 0).all()


def test_min_new_tokens_like_transformers():
    eos = frequent_token(LLAMA, step=1)
    ours = generate(LLAMA, PROMPTS, 8, eos_token_id=eos, min_new_tokens=4)
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=8, do_sample=False, eos_token_id=eos,
                         min_new_tokens=4)
    assert torch.equal(ours.token_ids, theirs)
    assert (ours.lengths >= 4).all()


@pytest.mark.parametrize("top_k, top_p, temperature", [(None, 1.0, 1.0), (20, 1.0, 0.7),
                                                       (None, 0.8, 1.3), (40, 0.9, 0.5)])
def test_sampling_equals_transformers_with_the_same_seed(top_k, top_p, temperature):
    ours = generate(LLAMA, PROMPTS, 8, do_sample=True, top_k=top_k, top_p=top_p,
                    temperature=temperature, random_state=7, eos_token_id=())
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=8, do_sample=True, top_k=top_k or 0,
                         top_p=top_p, temperature=temperature, seed=7, eos_token_id=None,
                         min_new_tokens=8)
    assert torch.equal(ours.token_ids, theirs)


def test_sampling_is_seeded_and_takes_a_generator():
    a = generate(LLAMA, PROMPTS, 6, do_sample=True, random_state=3)
    b = generate(LLAMA, PROMPTS, 6, do_sample=True, random_state=torch.Generator().manual_seed(3))
    c = generate(LLAMA, PROMPTS, 6, do_sample=True, random_state=4)
    assert torch.equal(a.token_ids, b.token_ids) and not torch.equal(a.token_ids, c.token_ids)


@torch.no_grad()
def test_sampled_first_tokens_follow_the_warped_distribution():
    n, prompt = 3000, LLAMA.tokenizer.encode("the")
    probs = LLAMA(torch.tensor([prompt]))[0][0, -1].softmax(-1)
    out = generate(LLAMA, [prompt] * n, 1, do_sample=True, random_state=0, eos_token_id=())
    freq = torch.bincount(out.token_ids[:, 0], minlength=probs.numel()) / n
    assert (freq - probs).abs().max() < 0.03
    top = probs.topk(5).indices
    out_k = generate(LLAMA, [prompt] * 200, 1, do_sample=True, top_k=5, random_state=1)
    assert torch.isin(out_k.token_ids[:, 0], top).all()
    nucleus = probs.sort(descending=True)
    keep = nucleus.indices[: int((nucleus.values.cumsum(0) < 0.5).sum()) + 1]
    out_p = generate(LLAMA, [prompt] * 200, 1, do_sample=True, top_p=0.5, random_state=2)
    assert torch.isin(out_p.token_ids[:, 0], keep).all()


@torch.no_grad()
@pytest.mark.parametrize("do_sample", [False, True])
def test_logprobs_equal_a_teacher_forced_forward_pass(do_sample):
    prompt = LLAMA.tokenizer.encode("abc")
    out = generate(LLAMA, [prompt], 6, do_sample=do_sample, temperature=0.8, random_state=0,
                   eos_token_id=())
    full = torch.tensor([prompt + out.token_ids[0].tolist()])
    lp = LLAMA(full)[0][0, len(prompt) - 1:-1].log_softmax(-1)                  # (T V)
    chosen = out.token_ids[0][:, None]
    torch.testing.assert_close(out.model_logprobs[0], lp.gather(1, chosen)[:, 0])
    warped = (lp / 0.8).log_softmax(-1) if do_sample else lp
    torch.testing.assert_close(out.logprobs[0], warped.gather(1, chosen)[:, 0])
    torch.testing.assert_close(out.scores, out.logprobs.sum(1))


def assert_same_up_to_lengths(ours, theirs, eos):
    """transformers fills finished beam hypotheses with EOS (pad id 0 is falsy there)."""
    n = ours.token_ids.shape[1]
    filler = torch.arange(theirs.shape[1]) >= ours.lengths[:, None]
    assert torch.equal(ours.token_ids.masked_fill(filler[:, :n], -1),
                       theirs[:, :n].masked_fill(filler[:, :n], -1))
    assert torch.isin(theirs[filler], torch.tensor([eos, LLAMA.tokenizer.pad_token_id])).all()


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -0.7, 2.0])
def test_beam_search_equals_transformers(length_penalty):
    eos = frequent_token(LLAMA, step=3)
    ours = generate(LLAMA, PROMPTS, 9, num_beams=3, length_penalty=length_penalty,
                    eos_token_id=eos)
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=9, num_beams=3, do_sample=False,
                         length_penalty=length_penalty, eos_token_id=eos)
    assert_same_up_to_lengths(ours, theirs, eos)
    assert (ours.lengths < 9).any() or length_penalty > 1.0   # long ones win at 2.0


@torch.no_grad()
def test_beam_search_with_every_token_as_a_beam_is_exact():
    prompt = LLAMA.tokenizer.encode("ok")
    vocab = LLAMA.vocab_size
    out = generate(LLAMA, [prompt], 2, num_beams=vocab, eos_token_id=())
    first = LLAMA(torch.tensor([prompt]))[0][0, -1].log_softmax(-1)               # (V)
    rows = torch.cat([torch.tensor([prompt]).expand(vocab, -1),
                      torch.arange(vocab)[:, None]], 1)
    second = LLAMA(rows)[0][:, -1].log_softmax(-1)                                # (V V)
    total = first[:, None] + second
    best = int(total.argmax())
    assert out.token_ids[0].tolist() == [best // vocab, best % vocab]
    torch.testing.assert_close(out.scores[0], total.max() / 2)


def _naive_ban(banned):
    """A transformers logits processor that bans by scanning whole histories, then
    renormalizes (as our loop does after every processor)."""
    from transformers import LogitsProcessor as HFLogitsProcessor

    class NaiveBan(HFLogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            for i, history in enumerate(input_ids.tolist()):
                for seq in banned:
                    if history[len(history) - len(seq) + 1:] == seq[:-1]:
                        scores[i, seq[-1]] = float("-inf")
            return scores.log_softmax(-1)

    return NaiveBan()


def test_banned_sequences_like_transformers_bad_words():
    free = generate(LLAMA, PROMPTS, 8)
    first, (a, b) = int(free.token_ids[0, 0]), free.token_ids[1, 2:4].tolist()
    banned = [[first], [a, b]]
    ours = generate(LLAMA, PROMPTS, 8, logits_processors=[BannedSequences(banned)])
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=8, do_sample=False,
                         bad_words_ids=banned)
    assert torch.equal(ours.token_ids, theirs)
    assert not (ours.token_ids == first).any()
    assert not torch.equal(ours.token_ids, free.token_ids)


def test_banned_sequences_through_beam_search_follow_the_beams():
    free = generate(LLAMA, PROMPTS, 8, num_beams=3)
    banned = [free.token_ids[0, 1:3].tolist(), free.token_ids[2, 4:6].tolist(),
              [int(free.token_ids[3, 0])]]
    ours = generate(LLAMA, PROMPTS, 8, num_beams=3, logits_processors=[BannedSequences(banned)])
    theirs = hf_generate(LLAMA, PROMPTS, max_new_tokens=8, num_beams=3, do_sample=False,
                         logits_processor=[_naive_ban(banned)])
    assert_same_up_to_lengths(ours, theirs, LLAMA.tokenizer.eos_token_id)
    assert not torch.equal(ours.token_ids, free.token_ids)


def test_banned_bigrams_never_appear_when_sampling_hot():
    processor = BannedSequences([[5, 6], [7]])
    prompts = [[1, 5]] * 32
    out = generate(LLAMA, prompts, 12, do_sample=True, temperature=50.0, random_state=0,
                   eos_token_id=(), logits_processors=[processor])
    seqs = torch.cat([torch.tensor(prompts), out.token_ids], 1)
    assert not (seqs[:, 2:] == 7).any()
    assert not ((seqs[:, :-1] == 5) & (seqs[:, 1:] == 6)).any()


def test_banned_sequences_state_follows_the_prompt_tail_and_reorders():
    processor = BannedSequences([[9, 8, 7], [4]])
    state = processor.init_state(torch.tensor([[1, 2, 9, 8], [0, 0, 0, 9]]), 5)
    assert state.tokens.tolist() == [[9, 8], [0, 9]]
    lp = torch.zeros(2, 12).log_softmax(-1)
    scores = processor.process(lp, state)
    assert torch.isinf(scores[:, 4]).all() and torch.isinf(scores[0, 7])
    assert torch.isfinite(scores[1, 7])
    state = processor.advance(state.reorder(torch.tensor([1, 1])), torch.tensor([8, 3]))
    assert state.tokens.tolist() == [[9, 8], [9, 3]]
    assert torch.isinf(processor.process(lp, state)[0, 7])


class _ForbidAll(LogitsProcessor):
    def init_state(self, prompt_ids, max_new_tokens):
        return RecentTokens(prompt_ids[:, :0])

    def process(self, log_probs, state):
        return torch.full_like(log_probs, float("-inf"))

    def advance(self, state, tokens):
        return state


@pytest.mark.parametrize("kwargs, match", [
    ({"prompts": []}, "prompts"),
    ({"prompts": "hello"}, "prompts"),
    ({"prompts": [[]]}, r"prompts\[0\]"),
    ({"prompts": [[1, 999]]}, r"prompts\[0\]"),
    ({"prompts": ["x" * 300]}, "context"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": 0.0}, "temperature"),
    ({"num_beams": 0}, "num_beams"),
    ({"num_beams": 2, "do_sample": True}, "num_beams"),
    ({"top_k": 0}, "top_k"),
    ({"min_new_tokens": 9}, "min_new_tokens"),
    ({"eos_token_id": 5000}, "eos_token_id"),
    ({"logits_processors": [_ForbidAll()]}, "logits_processors"),
])
def test_bad_arguments_raise_naming_them(kwargs, match):
    args = {"prompts": ["hi"], "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate(LLAMA, **args)


def test_a_tokenizer_without_eos_is_refused_unless_eos_is_given():
    lm = tiny_lm()
    lm.model.generation_config.eos_token_id = None
    lm.tokenizer.eos_token = None
    with pytest.raises(ValueError, match="eos_token_id"):
        generate(lm, ["hi"], 3)
    assert generate(lm, ["hi"], 3, eos_token_id=()).token_ids.shape == (1, 3)


def test_non_processor_and_non_lm_are_type_errors():
    with pytest.raises(TypeError, match="logits_processors"):
        generate(LLAMA, ["hi"], 2, logits_processors=[lambda lp, s: lp])
    with pytest.raises(TypeError, match="lm"):
        generate(LLAMA.model, ["hi"], 2)


def _repeats(history, n):
    """Brute force: the tokens that would repeat an n-gram of ``history`` (a list)."""
    tail = history[len(history) - (n - 1):]
    return {history[j + n - 1] for j in range(len(history) - n + 1)
            if history[j:j + n - 1] == tail} if len(history) >= n else set()


@pytest.mark.parametrize("n", [2, 3])
def test_no_repeat_ngram_bans_what_brute_force_finds_but_never_the_last_tokens(n):
    rng = torch.Generator().manual_seed(n)
    processor = NoRepeatNGram(n)
    state = processor.init_state(torch.zeros(64, 3, dtype=torch.int64), 10)
    histories = [[] for _ in range(64)]
    for _ in range(10):
        log_probs = torch.randn(64, 6, generator=rng)
        log_probs[torch.rand(64, 6, generator=rng) < 0.6] = float("-inf")  # a constraint's mask
        log_probs[:, 0] = torch.where(torch.isinf(log_probs).all(1), 0.0, log_probs[:, 0])
        out = processor.process(log_probs, state)
        for row, history in enumerate(histories):
            allowed = set(torch.isfinite(log_probs[row]).nonzero().ravel().tolist())
            banned = _repeats(history, n) if allowed - _repeats(history, n) else set()
            assert set(torch.isfinite(out[row]).nonzero().ravel().tolist()) == allowed - banned
        tokens = torch.multinomial(log_probs.softmax(1), 1, generator=rng)[:, 0]
        state = processor.advance(state, tokens)
        for history, t in zip(histories, tokens.tolist(), strict=True):
            history.append(t)


@pytest.mark.parametrize("decoding", [{"do_sample": True, "temperature": 0.5,
                                       "random_state": 0}, {"num_beams": 3}])
def test_no_repeat_ngram_outputs_repeat_no_ngram(decoding):
    out = generate(LLAMA, PROMPTS * 4, 16, eos_token_id=(),
                   logits_processors=[NoRepeatNGram(2)], **decoding)
    free = generate(LLAMA, PROMPTS * 4, 16, eos_token_id=(), **decoding)
    for ids in out.token_ids.tolist():
        assert len(set(itertools.pairwise(ids))) == len(ids) - 1
    assert any(len(set(itertools.pairwise(ids))) < len(ids) - 1
               for ids in free.token_ids.tolist())  # without it, this LM repeats


def test_no_repeat_ngram_refuses_bad_n():
    with pytest.raises(ValueError, match="n: expected an integer >= 2, got 1"):
        NoRepeatNGram(1)

"""seqprob.control.generate: words in, constrained text out (tiny LM, tiny distilled HMM)."""

import pytest

from seqprob.control import generate
from seqprob.control.defaults import default_hmm, lm_fingerprint
from seqprob.control.words import inflections
from seqprob.hmm import HMM
from seqprob.hmm.distill import distill
from seqprob.lm import tiny_lm

TINY = dict(n_states=8, seq_len=16, batch_size=16, n_init_batches=2, n_em_steps=2,
            n_held_out=16)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


@pytest.fixture(scope="module")
def hmm(lm):
    return distill(lm, verbose=False, **TINY).hmm


def _present(text, word):
    lowered = text.lower()
    return any(form in lowered for form in inflections(word))


@pytest.mark.parametrize("decoding", [{}, {"do_sample": True, "random_state": 2},
                                      {"num_beams": 3}])
def test_every_keyword_appears(lm, hmm, decoding):
    prompts = ["The", "A", "So", "Then"]
    keywords = [["dog", "frisbee"], ["run"], ["dog", "frisbee"], ["sun", "hat", "red"]]
    out = generate(lm, prompts, hmm, keywords=keywords, avoid=["bad"], max_new_tokens=30,
                   **decoding)
    assert len(out.texts) == 4 and out.satisfied == [True] * 4
    for text, words, ids in zip(out.texts, keywords, out.token_ids, strict=True):
        assert all(_present(text, w) for w in words)   # the substring oracle agrees
        assert "bad" not in text.lower().split()
        assert len(ids) <= 30


def test_without_constraints_is_plain_decoding(lm, hmm):
    from seqprob.lm import generate as plain

    out = generate(lm, ["Hi"], hmm, max_new_tokens=8)
    ref = plain(lm, ["Hi"], 8, eos_token_id=lm.eos_token_ids)
    assert out.texts == ref.texts
    assert out.model_logprobs[0] == pytest.approx(ref.model_logprobs[0].tolist())
    assert out.satisfied == [None]


def test_bad_input_fails_before_decoding(lm, hmm):
    with pytest.raises(ValueError, match=r"keywords\[0\]: expected a non-empty list"):
        generate(lm, ["a"], hmm, keywords=[[]])
    with pytest.raises(ValueError, match="one list of words per prompt"):
        generate(lm, ["a", "b"], hmm, keywords=[["dog"]])
    with pytest.raises(ValueError, match="required but avoid bans"):
        generate(lm, ["a"], hmm, keywords=[["dog"]], avoid=["dogs"])
    with pytest.raises(ValueError, match="word"):
        generate(lm, ["a"], hmm, keywords=[["!!"]])
    with pytest.raises(ValueError, match="max_new_tokens: the constraint needs at least"):
        generate(lm, ["a"], hmm, keywords=[["elephant"]], max_new_tokens=4)
    with pytest.raises(ValueError, match="vocabulary of 259 tokens, got one over 10"):
        generate(lm, ["a"], HMM(2, n_symbols=10), keywords=[["dog"]])
    with pytest.raises(TypeError, match="hmm"):
        generate(lm, ["a"], "hmm.safetensors", keywords=[["dog"]])


def test_default_hmm_is_distilled_once_and_cached(lm, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path))
    first = default_hmm(lm, verbose=False, **TINY)
    files = list(tmp_path.glob("hmm-*.safetensors"))
    assert len(files) == 1 and lm_fingerprint(lm) in files[0].name
    again = default_hmm(lm, verbose=False, **TINY)
    assert (again.emission.log_emission == first.emission.log_emission).all()
    other = tiny_lm(random_state=1)
    assert lm_fingerprint(other) != lm_fingerprint(lm)


def test_attribute_by_name(lm, hmm, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path))
    out = generate(lm, ["The"], hmm, keywords=[["dog"]], attributes="positive", strength=1.0,
                   max_new_tokens=20)
    assert out.satisfied == [True]
    assert len(list(tmp_path.glob("attribute-*.safetensors"))) == 1


@pytest.mark.slow
def test_smollm2_commongen_with_the_default_hmm():
    from seqprob.control.generation import concept_prompt
    from seqprob.lm import load

    smol = load("smollm2-135m")
    concepts = [["ball", "bunch", "kid", "throw"], ["bathroom", "clipper", "cut", "hair"]]
    out = generate(smol, [concept_prompt(smol, c) for c in concepts], keywords=concepts,
                   max_new_tokens=40)
    assert out.satisfied == [True, True]
    for text, words in zip(out.texts, concepts, strict=True):
        assert all(_present(text, w) for w in words)


@pytest.mark.parametrize(("flags", "want"), [("fpu avx2 avx512_bf16", "bfloat16"),
                                             ("fpu amx_bf16", "bfloat16"), ("fpu avx2", None)])
def test_fast_autocast_reads_the_cpu_flags(lm, monkeypatch, flags, want):
    from seqprob.core import device

    class FakePath:
        def __init__(self, path):
            assert path == "/proc/cpuinfo"

        def read_text(self, **_):
            return f"processor : 0\nflags : {flags}\n"

    monkeypatch.setattr(device, "Path", FakePath)
    assert device.fast_autocast_dtype(lm.device) == want

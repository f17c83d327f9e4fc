"""The pruned fp16 HMM artifact (save -> load round trip) and the default-HMM lookup."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

from seqprob.control import defaults
from seqprob.control.hmm_tables import hmm_tables
from seqprob.hmm import HMM
from seqprob.hmm.artifact import artifact_config, load_artifact, load_hmm, save_artifact
from seqprob.lm import tiny_lm


def _distilled_like(k=3, v=40, n_observed=25, seed=0):
    """An HMM whose unobserved tokens share one probability per state (as add-pseudocount EM
    leaves them), and the observed mask."""
    g = torch.Generator().manual_seed(seed)
    observed = torch.zeros(v, dtype=torch.bool)
    observed[torch.randperm(v, generator=g)[:n_observed]] = True
    counts = torch.rand(k, v, generator=g, dtype=torch.float64) * 50 * observed + 0.01
    hmm = HMM(k, n_symbols=v)
    hmm.set_probabilities(torch.rand(k, generator=g).softmax(0),
                          torch.rand(k, k, generator=g).softmax(1))
    with torch.no_grad():
        hmm.emission.log_emission.copy_((counts / counts.sum(1, keepdim=True)).log())
    return hmm, observed


def test_round_trip_equal_up_to_fp16_and_residual_mass_kept(tmp_path):
    hmm, observed = _distilled_like()
    path = save_artifact(hmm, tmp_path / "a.safetensors", observed.double() * 3,
                         metadata={"note": "x"})
    back = load_artifact(path)
    assert isinstance(back, HMM) and back.emission.n_symbols == 40 and back.n_states == 3
    for got, want in ((back.log_startprob, hmm.log_startprob),
                      (back.log_transmat, hmm.log_transmat),
                      (back.emission.log_emission, hmm.emission.log_emission)):
        torch.testing.assert_close(got.exp(), want.exp(), rtol=2e-3, atol=1e-6)
        sums = got.double().exp().sum(-1)
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
    rest_back = back.emission.log_emission.exp()[:, ~observed].double().sum(1)
    rest = hmm.emission.log_emission.exp()[:, ~observed].double().sum(1)
    torch.testing.assert_close(rest_back, rest, rtol=2e-3, atol=0)
    assert bool((back.emission.log_emission[:, ~observed] > -math.inf).all())   # a floor
    hmm_tables(back.log_startprob, back.log_transmat, back.emission.log_emission)
    config = artifact_config(path)
    assert config["n_observed"] == 25 and config["metadata"] == {"note": "x"}
    assert torch.equal(load_hmm(path).log_transmat, back.log_transmat)


def test_unequal_unobserved_mass_becomes_one_shared_floor(tmp_path):
    hmm, _ = _distilled_like(seed=1)
    observed = torch.zeros(40, dtype=torch.bool)
    observed[:10] = True
    back = load_artifact(save_artifact(hmm, tmp_path / "b.safetensors", observed))
    floor = back.emission.log_emission[:, 10:].exp()
    assert torch.allclose(floor, floor[:, :1].expand_as(floor))
    torch.testing.assert_close(floor.double().sum(1),
                               hmm.emission.log_emission[:, 10:].exp().double().sum(1),
                               rtol=2e-3, atol=0)


def test_artifact_of_a_distilled_hmm_keeps_held_out_likelihood(tmp_path):
    from seqprob.hmm.distill import distill, hmm_log_likelihood

    lm = tiny_lm(random_state=0)
    r = distill(lm, 6, seq_len=12, batch_size=16, n_init_batches=2, n_em_steps=2,
                n_held_out=16, verbose=False)
    assert int((r.token_counts == 0).sum()) > 0                     # something is pruned
    back = load_artifact(save_artifact(r.hmm, tmp_path / "c.safetensors", r.token_counts))
    full, pruned = (hmm_log_likelihood(h, r.held_out_tokens) for h in (r.hmm, back))
    assert pruned == pytest.approx(full, abs=1e-3)


def test_bad_input(tmp_path):
    hmm, observed = _distilled_like()
    with pytest.raises(TypeError, match="hmm"):
        save_artifact(HMM(2, "gaussian", n_features=1), tmp_path / "x", observed)
    with pytest.raises(ValueError, match="observed"):
        save_artifact(hmm, tmp_path / "x", observed[:5])
    path = hmm.save(tmp_path / "full.safetensors")
    with pytest.raises(ValueError, match="artifact"):
        artifact_config(path)
    assert torch.equal(load_hmm(path).log_transmat, hmm.log_transmat)   # either format


@pytest.fixture
def lm():
    return tiny_lm(random_state=0)


def test_default_hmm_uses_the_shipped_artifact_of_this_lm(lm, tmp_path, monkeypatch):
    hmm, _ = _distilled_like(k=4, v=lm.vocab_size, n_observed=100)
    monkeypatch.setattr(defaults, "ARTIFACT_DIR", tmp_path)
    save_artifact(hmm, defaults.artifact_path("tiny"), torch.ones(lm.vocab_size),
                  metadata={"lm_fingerprint": defaults.lm_fingerprint(lm)})

    def no_distill(*args, **kwargs):
        raise AssertionError("distilled although an artifact ships for this LM")

    monkeypatch.setattr(defaults, "distill", no_distill)
    assert defaults.shipped_hmm_path(lm) == defaults.artifact_path("tiny")
    got = defaults.default_hmm(lm, verbose=False)
    torch.testing.assert_close(got.log_transmat.exp(), hmm.log_transmat.exp(), rtol=2e-3,
                               atol=1e-6)


def test_default_hmm_falls_back_to_distillation(lm, tmp_path, monkeypatch):
    hmm, _ = _distilled_like(k=4, v=lm.vocab_size, n_observed=100)
    monkeypatch.setattr(defaults, "ARTIFACT_DIR", tmp_path / "data")
    monkeypatch.setenv("SEQPROB_CACHE", str(tmp_path / "cache"))
    save_artifact(hmm, defaults.artifact_path("other"), torch.ones(lm.vocab_size),
                  metadata={"lm_fingerprint": "0123456789abcdef"})
    calls = []

    def fake_distill(lm_, **settings):
        calls.append(settings)
        return SimpleNamespace(hmm=HMM(settings["n_states"], n_symbols=lm_.vocab_size),
                               held_out={"hmm": -1.0})

    monkeypatch.setattr(defaults, "distill", fake_distill)
    assert defaults.shipped_hmm_path(lm) is None
    got = defaults.default_hmm(lm, verbose=False)
    assert got.n_states == defaults.DEFAULT_DISTILL["n_states"] and len(calls) == 1


def test_cli_artifact_flag_and_deprecated_n_hidden(tmp_path, capsys):
    from seqprob.cli import main

    folder = tmp_path / "tiny"
    lm = tiny_lm(random_state=5)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    out = tmp_path / "a.safetensors"
    assert main(["distill", "--model", str(folder), "--n-hidden", "3", "--seq-len", "8",
                 "--batch-size", "8", "--init-batches", "1", "--em-steps", "1",
                 "--held-out", "4", "--artifact", "--output", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "--n-hidden is deprecated" in captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["n_states"] == 3 and 0 < summary["observed_tokens"] < 259
    config = artifact_config(out)
    assert config["metadata"]["lm_fingerprint"] == defaults.lm_fingerprint(lm)
    assert config["metadata"]["recipe"]["n_states"] == 3
    assert load_artifact(out).n_states == 3


def test_cli_default_selects_the_shipped_recipe():
    import argparse

    from seqprob.cli.distill import register, settings_from

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert settings_from(parser.parse_args(["distill", "--default"])) == defaults.DEFAULT_RECIPE
    args = parser.parse_args(["distill", "--default", "-n", "512", "--em-steps", "3"])
    assert settings_from(args) == {**defaults.DEFAULT_RECIPE, "n_states": 512, "n_em_steps": 3}
    assert settings_from(parser.parse_args(["distill"])) == defaults.DEFAULT_DISTILL
    recipe = defaults.DEFAULT_RECIPE
    trained = (recipe["n_init_batches"] + recipe["n_em_steps"]) * recipe["batch_size"]
    assert recipe["n_states"] >= 256 and recipe["seq_len"] == 32
    assert trained * recipe["seq_len"] >= 1_000_000

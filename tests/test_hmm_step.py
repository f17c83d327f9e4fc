"""The HMM step primitive (predict/condition) against its log-space reference twin, and the
filter, ``HMM.step`` and the control tables all going through it."""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.control.hmm_tables import hmm_predict, hmm_tables
from seqprob.hmm import HMM, inference
from seqprob.hmm.step import condition, condition_log, predict, predict_log

# (seqprob.control re-exports a function named hmm_tables, so import the modules by name)
inference_module = importlib.import_module("seqprob.hmm.inference")
model_module = importlib.import_module("seqprob.hmm.model")
hmm_tables_module = importlib.import_module("seqprob.control.hmm_tables")


def _random(k, b, seed, zeros=False):
    gen = torch.Generator().manual_seed(seed)
    prior = torch.softmax(torch.randn(b, k, generator=gen, dtype=torch.float64) * 2, -1)
    trans = torch.softmax(torch.randn(k, k, generator=gen, dtype=torch.float64) * 2, -1)
    lik = torch.rand(b, k, generator=gen, dtype=torch.float64)
    if zeros:  # some impossible observations: whole rows of zero likelihood
        lik[::2] = 0.0
    return prior, trans, lik


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 7), b=st.integers(1, 4), seed=st.integers(0, 999), zeros=st.booleans())
def test_step_equals_its_log_space_twin(k, b, seed, zeros):
    prior, trans, lik = _random(k, b, seed, zeros)
    post, norm = condition(prior, lik)
    with torch.no_grad():
        log_post, log_norm = condition_log(prior.log(), lik.log())
    torch.testing.assert_close(norm.log(), log_norm)
    torch.testing.assert_close(post, log_post.exp())
    assert not bool(torch.isnan(post).any())
    torch.testing.assert_close(predict(post, trans), predict_log(log_post, trans.log()).exp())


def test_condition_accepts_a_scaled_likelihood():
    prior, _, lik = _random(4, 3, 0)
    post, norm = condition(prior, lik)
    post2, norm2 = condition(prior, lik * 1e-30)
    torch.testing.assert_close(post, post2)
    torch.testing.assert_close(norm * 1e-30, norm2)


def test_hmm_step_matches_the_log_space_recursion():
    torch.manual_seed(0)
    model = HMM(4, "categorical", n_symbols=6, dtype="float64")
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(4, 4) * 2, -1))
        model.emission.log_emission.copy_(torch.log_softmax(torch.randn(4, 6) * 2, -1))
    x = torch.tensor([[1, 5, 0, 3, 3], [2, 2, 4, 1, 0]])
    state = model.init_state(2)
    log_filter = model.log_startprob.detach().expand(2, -1)
    log_lik = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = model.step(x[:, t], state)
            if t:
                log_filter = predict_log(log_filter, model.log_transmat)
            log_filter, log_norm = condition_log(log_filter,
                                                 model.emission.log_emission[:, x[:, t]].T)
            log_lik = log_lik + log_norm
            torch.testing.assert_close(y, log_filter)
    torch.testing.assert_close(state.log_likelihood, log_lik)
    full, whole = model(x)
    torch.testing.assert_close(full[:, -1], y)
    torch.testing.assert_close(whole.log_likelihood, log_lik)


def test_transition_cache_follows_parameter_updates():
    model = HMM(3, "categorical", n_symbols=4, dtype="float64")
    first = model.transition_probabilities().clone()
    model.set_probabilities(transmat=torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0],
                                                   [0.2, 0.3, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(model.transition_probabilities(), model.log_transmat.exp())
    assert not torch.equal(first, model.transition_probabilities())


@pytest.mark.parametrize("module", [inference_module, model_module, hmm_tables_module])
def test_filter_step_and_control_go_through_the_primitive(module, monkeypatch):
    calls = {"predict": 0, "condition": 0}

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        return wrapper

    monkeypatch.setattr(module, "predict", counted("predict", predict))
    monkeypatch.setattr(module, "condition", counted("condition", condition))
    x = torch.tensor([[0, 2, 1]])
    if module is inference_module:
        loglik = torch.log_softmax(torch.randn(1, 3, 2, dtype=torch.float64), -1)
        inference.forward_filter(torch.log(torch.full((2,), 0.5, dtype=torch.float64)),
                                 torch.log(torch.full((2, 2), 0.5, dtype=torch.float64)),
                                 loglik, method="sequential")
    elif module is model_module:
        model = HMM(2, "categorical", n_symbols=3)
        state = model.init_state(1)
        for t in range(3):
            _, state = model.step(x[:, t], state)
    else:
        logits = [torch.log_softmax(torch.randn(*s, dtype=torch.float64), -1)
                  for s in ((2,), (2, 2), (2, 3))]
        tables = hmm_tables(*logits)
        prior = tables.initial[None]
        for t in range(3):
            prior = hmm_predict(tables, prior, x[:, t])
    assert calls["condition"] == 3 and calls["predict"] >= 2

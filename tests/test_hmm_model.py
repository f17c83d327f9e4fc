"""The HMM module: persistence, parameter setting, sampling, decoding."""

from __future__ import annotations

import pytest
import torch

import seqprob
from seqprob.hmm import HMM, inference


def _model(kind="gaussian", **kwargs):
    torch.manual_seed(0)
    opts = dict(n_symbols=5) if kind == "categorical" else dict(n_features=2)
    model = HMM(3, kind, dtype="float64", **opts, **kwargs)
    model.set_probabilities(torch.tensor([0.5, 0.3, 0.2]),
                            torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.3, 0.0, 0.7]]))
    with torch.no_grad():
        if kind == "gaussian":
            model.emission.means.copy_(torch.tensor([[-3.0, 0.0], [0.0, 3.0], [3.0, 0.0]]))
    return model


@pytest.mark.parametrize("kind", ["gaussian", "categorical", "poisson"])
def test_save_and_generic_load_round_trip(kind, tmp_path):
    model = _model(kind, covariance_type="tied") if kind == "gaussian" else _model(kind)
    x, _ = model.sample(12, 2, generator=torch.Generator().manual_seed(0))
    model.save(tmp_path / "hmm.safetensors")
    again = seqprob.load(tmp_path / "hmm.safetensors")
    assert isinstance(again, HMM) and again.get_config() == model.get_config()
    torch.testing.assert_close(again.posteriors(x).log_likelihood,
                               model.posteriors(x).log_likelihood)


def test_forward_gives_normalized_log_filtering_and_running_log_likelihood():
    model = _model()
    x, states = model.sample(20, 3, generator=torch.Generator().manual_seed(1))
    log_filter, state = model(x)
    torch.testing.assert_close(torch.logsumexp(log_filter, -1), torch.zeros(3, 20,
                                                                            dtype=torch.float64))
    torch.testing.assert_close(state.log_likelihood, model.posteriors(x).log_likelihood)
    assert state.position == 20
    assert (log_filter.argmax(-1) == states).double().mean() > 0.9


def test_sampling_respects_structural_zeros_and_first_state():
    model = _model()
    _, states = model.sample(200, 4, generator=torch.Generator().manual_seed(2), first_state=2)
    assert (states[:, 0] == 2).all()
    pairs = set(zip(states[:, :-1].flatten().tolist(), states[:, 1:].flatten().tolist(),
                    strict=True))
    assert (0, 2) not in pairs and (2, 1) not in pairs
    with pytest.raises(ValueError, match="first_state"):
        model.sample(3, first_state=3)


def test_decode_matches_inference_functions():
    model = _model()
    x, _ = model.sample(15, 2, generator=torch.Generator().manual_seed(3))
    table = model.log_likelihood_table(x)
    for algorithm, fn in (("viterbi", inference.viterbi), ("map", inference.map_decode)):
        got = model.decode(x, algorithm=algorithm)
        want = fn(model.log_startprob, model.log_transmat, table)
        assert torch.equal(got.path, want.path)
    with pytest.raises(ValueError, match="algorithm"):
        model.decode(x, algorithm="beam")


@pytest.mark.parametrize(("start", "trans", "match"), [
    (torch.tensor([0.5, 0.6, 0.0]), None, "startprob: expected rows summing to 1"),
    (torch.tensor([1.5, -0.5, 0.0]), None, "startprob: expected finite non-negative"),
    (None, torch.full((3, 3), 0.5), "transmat: expected rows summing to 1"),
    (None, torch.eye(2), "transmat: expected shape"),
])
def test_non_stochastic_parameters_raise(start, trans, match):
    with pytest.raises(ValueError, match=match):
        _model().set_probabilities(start, trans)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(n_states=0, emission="categorical", n_symbols=3), ValueError, "n_states"),
    (dict(n_states=2, emission="categorical"), ValueError, "n_symbols: required"),
    (dict(n_states=2, emission="gaussian"), ValueError, "n_features: required"),
    (dict(n_states=2, emission="zipf", n_symbols=3), ValueError, "emission"),
    (dict(n_states=2.5, emission="categorical", n_symbols=3), TypeError, "n_states"),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        HMM(**kwargs)


def test_gradient_of_log_likelihood_is_the_expected_counts():
    """d log p(x) / d log A = expected transition counts (Fisher's identity): autograd
    through the forward pass against forward-backward."""
    model = _model("categorical")
    x, _ = model.sample(10, 3, generator=torch.Generator().manual_seed(4))
    _, state = model(x)
    state.log_likelihood.sum().backward()
    with torch.no_grad():
        post = model.posteriors(x)
    torch.testing.assert_close(model.log_transmat.grad, post.transitions)
    torch.testing.assert_close(model.log_startprob.grad, post.smoothed[:, 0].sum(0))

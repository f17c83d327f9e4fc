"""Cross-checks against hmmlearn 0.3.3 in float64 on random models and data: log-likelihood,
posteriors, Viterbi paths and one EM step's parameters agree to 1e-6 relative."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from seqprob.hmm import estimators as ours

hmm = pytest.importorskip("hmmlearn.hmm")
RTOL = 1e-6
LENGTHS = [30, 17, 9, 1]


def _stochastic(rng, *shape):
    a = rng.rand(*shape) + 0.05
    return a / a.sum(-1, keepdims=True)


def _covars(rng, cov_type, k, d):
    a = rng.randn(k, d, d)
    full = a @ a.transpose(0, 2, 1) + np.eye(d)
    return {"spherical": full[:, 0, 0], "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
            "full": full, "tied": full[0]}[cov_type]


def _pair(kind, cov_type, seed, k=3, d=2, v=5):
    """The same random model in hmmlearn and in seqprob, and data for it."""
    rng = np.random.RandomState(seed)
    n = sum(LENGTHS)
    shared = dict(startprob_=_stochastic(rng, k), transmat_=_stochastic(rng, k, k))
    if kind == "gaussian":
        make = dict(n_components=k, covariance_type=cov_type, n_iter=1, init_params="")
        theirs, mine = hmm.GaussianHMM(**make), ours.GaussianHMM(**make)
        shared |= dict(means_=rng.randn(k, d) * 2, covars_=_covars(rng, cov_type, k, d))
        X = rng.randn(n, d) * 2
    elif kind == "categorical":
        make = dict(n_components=k, n_iter=1, init_params="")
        theirs, mine = hmm.CategoricalHMM(**make), ours.CategoricalHMM(**make)
        shared |= dict(emissionprob_=_stochastic(rng, k, v))
        X = rng.randint(0, v, (n, 1))
    else:
        make = dict(n_components=k, n_iter=1, init_params="")
        theirs, mine = hmm.PoissonHMM(**make), ours.PoissonHMM(**make)
        shared |= dict(lambdas_=rng.rand(k, d) * 6 + 0.2)
        X = rng.poisson(3.0, (n, d))
    for model in (theirs, mine):
        for name, value in shared.items():
            setattr(model, name, value.copy())
    return theirs, mine, X


CASES = ([("gaussian", c) for c in ("spherical", "diag", "full", "tied")]
         + [("categorical", None), ("poisson", None)])


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(("kind", "cov_type"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_inference_agrees_with_hmmlearn(kind, cov_type, seed):
    theirs, mine, X = _pair(kind, cov_type, seed)
    _close(mine.score(X, LENGTHS), theirs.score(X, LENGTHS))
    _close(mine.predict_proba(X, LENGTHS), theirs.predict_proba(X, LENGTHS))
    log_prob, path = mine.decode(X, LENGTHS)
    their_log_prob, their_path = theirs.decode(X, LENGTHS)
    _close(log_prob, their_log_prob)
    np.testing.assert_array_equal(path, their_path)


@pytest.mark.parametrize(("kind", "cov_type"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_one_em_step_agrees_with_hmmlearn(kind, cov_type, seed):
    theirs, mine, X = _pair(kind, cov_type, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X, LENGTHS)
        mine.fit(X, LENGTHS)
    names = {"gaussian": ["means_", "_covars_"], "categorical": ["emissionprob_"],
             "poisson": ["lambdas_"]}[kind]
    for name in ["startprob_", "transmat_", *names]:
        want = getattr(theirs, name)
        got = getattr(mine, name)
        if name == "_covars_" and cov_type == "spherical":
            want = want[:, 0]  # hmmlearn tiles spherical variances to (K, D) after an M-step
        _close(got, want)
    _close(mine.monitor_.history[0], theirs.monitor_.history[0])


def test_map_decoding_differs_from_hmmlearn_on_purpose():
    """hmmlearn 0.3.3 returns the sum of the maximal posterior *probabilities* for
    ``algorithm="map"``; seqprob returns log p(X, path), which Viterbi's value bounds."""
    theirs, mine, X = _pair("poisson", None, 0)
    their_value, their_path = theirs.decode(X, LENGTHS, algorithm="map")
    value, path = mine.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(path, their_path)
    _close(their_value, theirs.predict_proba(X, LENGTHS).max(1).sum())
    assert value <= mine.decode(X, LENGTHS, algorithm="viterbi")[0] < 0 < their_value

"""Cross-checks against hmmlearn 0.3.3 in float64 on random models and data: log-likelihood,
posteriors, Viterbi paths and one EM step's parameters agree to 1e-6 relative."""

from __future__ import annotations

import logging
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


def _mixture_covars(rng, cov_type, k, m, d):
    """Random GMMHMM covariances in hmmlearn's layout for ``cov_type``."""
    full = np.stack([_covars(rng, "full", m, d) for _ in range(k)])      # (k m d d)
    return {"spherical": full[..., 0, 0], "diag": np.diagonal(full, axis1=2, axis2=3).copy(),
            "full": full, "tied": full[:, 0]}[cov_type]


def _pair(kind, cov_type, seed, k=3, d=2, v=5, m=2):
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
    elif kind == "gmm":
        make = dict(n_components=k, n_mix=m, covariance_type=cov_type, n_iter=1,
                    init_params="")
        theirs, mine = hmm.GMMHMM(**make), ours.GMMHMM(**make)
        shared |= dict(weights_=_stochastic(rng, k, m), means_=rng.randn(k, m, d) * 2,
                       covars_=_mixture_covars(rng, cov_type, k, m, d))
        X = rng.randn(n, d) * 2
    elif kind == "multinomial":
        make = dict(n_components=k, n_trials=6, n_iter=1, init_params="")
        theirs, mine = hmm.MultinomialHMM(**make), ours.MultinomialHMM(**make)
        shared |= dict(emissionprob_=_stochastic(rng, k, v))
        X = rng.multinomial(6, np.full(v, 1 / v), size=n)
    else:
        make = dict(n_components=k, n_iter=1, init_params="")
        theirs, mine = hmm.PoissonHMM(**make), ours.PoissonHMM(**make)
        shared |= dict(lambdas_=rng.rand(k, d) * 6 + 0.2)
        X = rng.poisson(3.0, (n, d))
    for model in (theirs, mine):
        for name, value in shared.items():
            setattr(model, name, value.copy())
    return theirs, mine, X


COV_TYPES = ("spherical", "diag", "full", "tied")
CASES = ([("gaussian", c) for c in COV_TYPES] + [("gmm", c) for c in COV_TYPES]
         + [("categorical", None), ("poisson", None), ("multinomial", None)])


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
             "poisson": ["lambdas_"], "gmm": ["weights_", "means_", "covars_"],
             "multinomial": ["emissionprob_"]}[kind]
    for name in ["startprob_", "transmat_", *names]:
        want, got = getattr(theirs, name), getattr(mine, name)
        if name == "_covars_" and cov_type == "spherical":
            # hmmlearn tiles spherical variances to (K, D) after an M-step (and then reads
            # covars_ back with the wrong shape); compare the stored variances
            want = want[:, 0]
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


@pytest.mark.parametrize(("kind", "cov_type"), CASES)
def test_sample_covars_and_n_features_read_back_like_hmmlearn(kind, cov_type):
    theirs, mine, X = _pair(kind, cov_type, 0)
    their_X, their_Z = theirs.sample(7, random_state=0)
    my_X, my_Z = mine.sample(7, random_state=np.random.RandomState(0))
    assert my_X.shape == their_X.shape and my_Z.shape == their_Z.shape
    theirs.score(X, LENGTHS)  # hmmlearn sets n_features while checking its parameters
    assert mine.n_features == theirs.n_features
    if kind == "gaussian":
        _close(mine.covars_, theirs.covars_)


def test_stationary_distribution_agrees_with_hmmlearn_and_is_stationary():
    theirs, mine, _ = _pair("poisson", None, 3)
    pi = mine.get_stationary_distribution()
    _close(pi, theirs.get_stationary_distribution())
    _close(pi @ mine.transmat_, pi)


def test_positional_arguments_follow_hmmlearn_order():
    import inspect

    for name in ("CategoricalHMM", "GaussianHMM", "GMMHMM", "MultinomialHMM", "PoissonHMM"):
        want = [p.name for p in inspect.signature(getattr(hmm, name)).parameters.values()
                if p.kind == p.POSITIONAL_OR_KEYWORD]
        got = [p.name for p in inspect.signature(getattr(ours, name)).parameters.values()
               if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert got == want, name
    model = ours.GaussianHMM(3, "full", implementation="scaling")
    assert (model.covariance_type, model.implementation) == ("full", "scaling")


def _logged(caplog, logger, fit):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=logger), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit()
    return [r.getMessage() for r in caplog.records if r.name == logger]


@pytest.mark.parametrize("kind", ["gaussian", "categorical", "poisson"])
def test_logged_warnings_match_hmmlearn(kind, caplog):
    """Overwritten hand-set parameters and too little data: hmmlearn's messages, logged."""
    theirs, mine, X = _pair(kind, "diag", 0)
    for model in (theirs, mine):
        model.set_params(init_params="st", n_iter=2)
    X = X[:3]
    want = _logged(caplog, "hmmlearn.base", lambda: theirs.fit(X))
    got = _logged(caplog, "seqprob.hmm.estimators", lambda: mine.fit(X))
    assert [m for m in want if "converging" not in m] == [m for m in got
                                                          if "converging" not in m]
    assert any("startprob_" in m for m in got) and any("degenerate" in m for m in got)

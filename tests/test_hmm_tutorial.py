"""hmmlearn's tutorial (doc/source/tutorial.rst, 0.3.3) run unchanged with ``from seqprob
import hmm`` in place of ``from hmmlearn import hmm``: every statement of its examples, in
order; the checks after each block are what the tutorial shows as output."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_hmmlearn_tutorial_runs_with_seqprob(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the tutorial pickles to "filename.pkl"

    # --- Building HMM and generating samples ---
    from seqprob import hmm
    np.random.seed(42)  # noqa: NPY002 (the tutorial seeds numpy's global generator)

    model = hmm.GaussianHMM(n_components=3, covariance_type="full")
    model.startprob_ = np.array([0.6, 0.3, 0.1])
    model.transmat_ = np.array([[0.7, 0.2, 0.1],
                                [0.3, 0.5, 0.2],
                                [0.3, 0.3, 0.4]])
    model.means_ = np.array([[0.0, 0.0], [3.0, -3.0], [5.0, 10.0]])
    model.covars_ = np.tile(np.identity(2), (3, 1, 1))
    X, Z = model.sample(100)
    assert X.shape == (100, 2) and Z.shape == (100,)

    lr = hmm.GaussianHMM(n_components=3, covariance_type="diag",
                         init_params="cm", params="cmt")
    lr.startprob_ = np.array([1.0, 0.0, 0.0])
    lr.transmat_ = np.array([[0.5, 0.5, 0.0],
                             [0.0, 0.5, 0.5],
                             [0.0, 0.0, 1.0]])

    model = hmm.GaussianHMM(n_components=3)
    with pytest.raises(NotFittedError, match="This GaussianHMM instance is not fitted yet"):
        X, Z = model.sample(100)

    # --- Fixing parameters ---
    model = hmm.GaussianHMM(n_components=3, n_iter=100, init_params="mcs")
    model.transmat_ = np.array([[0.7, 0.2, 0.1],
                                [0.3, 0.5, 0.2],
                                [0.3, 0.3, 0.4]])

    # --- Training HMM parameters and inferring the hidden states ---
    remodel = hmm.GaussianHMM(n_components=3, covariance_type="full", n_iter=100)
    assert repr(remodel.fit(X)).startswith("GaussianHMM(")
    Z2 = remodel.predict(X)
    assert Z2.shape == (100,) and len(set(Z2)) == 3  # three well-separated clusters

    # --- Monitoring convergence ---
    assert repr(remodel.monitor_).startswith("ConvergenceMonitor(")
    assert remodel.monitor_.converged

    # --- Working with multiple sequences ---
    X1 = [[0.5], [1.0], [-1.0], [0.42], [0.24]]
    X2 = [[2.4], [4.2], [0.5], [-0.24]]
    X = np.concatenate([X1, X2])
    lengths = [len(X1), len(X2)]
    assert repr(hmm.GaussianHMM(n_components=3).fit(X, lengths)).startswith("GaussianHMM(")

    # --- Saving and loading HMM ---
    with open("filename.pkl", "wb") as file: pickle.dump(remodel, file)  # noqa: E701
    with open("filename.pkl", "rb") as file: pickle.load(file)  # noqa: E701
    with open("filename.pkl", "rb") as file:
        again = pickle.load(file)
    assert repr(again).startswith("GaussianHMM(")
    np.testing.assert_array_equal(again.predict(np.zeros((4, 2))),
                                  remodel.predict(np.zeros((4, 2))))

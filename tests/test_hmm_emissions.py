"""Emission tables against scipy, exact marginalization of missing observations, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from seqprob.hmm import HMM, CategoricalEmission, GaussianEmission, PoissonEmission
from tests.hmm_helpers import random_model


def _gaussian(cov_type, k=3, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    em = GaussianEmission(k, d, covariance_type=cov_type).double()
    with torch.no_grad():
        em.means.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
    a = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    full = a @ a.transpose(1, 2) + torch.eye(d, dtype=torch.float64)
    covs = {"spherical": full[:, 0, 0], "diag": torch.diagonal(full, dim1=1, dim2=2),
            "full": full, "tied": full[0]}[cov_type]
    em.set_covariances(covs)
    return em, covs


@pytest.mark.parametrize("cov_type", ["spherical", "diag", "full", "tied"])
def test_gaussian_table_matches_scipy(cov_type):
    em, covs = _gaussian(cov_type)
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    table = em.log_likelihood(x)
    c = covs.numpy()
    if cov_type == "spherical":
        full = [ci * np.eye(2) for ci in c]
    elif cov_type == "diag":
        full = [np.diag(ci) for ci in c]
    else:
        full = list(c) if cov_type == "full" else [c] * 3
    for k, cov in enumerate(full):
        want = stats.multivariate_normal(em.means[k].detach().numpy(), cov).logpdf(
            x.reshape(-1, 2).numpy())
        np.testing.assert_allclose(table[..., k].reshape(-1).detach().numpy(), want, rtol=1e-10)
    torch.testing.assert_close(em.covariances(), covs)


def test_poisson_and_categorical_tables_match_scipy():
    em = PoissonEmission(2, 3).double()
    with torch.no_grad():
        em.log_rate.copy_(torch.log(torch.tensor([[0.5, 2.0, 7.0], [3.0, 0.1, 1.0]])))
    x = torch.tensor([[[0, 1, 5], [2, 0, 9]]], dtype=torch.float64)
    want = stats.poisson(torch.exp(em.log_rate).detach().numpy()[None]).logpmf(
        x.reshape(-1, 1, 3).numpy()).sum(-1)
    np.testing.assert_allclose(em.log_likelihood(x).reshape(-1, 2).detach().numpy(), want)
    cat = CategoricalEmission(2, 5).double()
    x = torch.tensor([[4, 0, -1]])
    table = cat.log_likelihood(x)
    torch.testing.assert_close(table[0, :2], cat.log_emission[:, [4, 0]].T)
    assert (table[0, 2] == 0).all()


def test_categorical_statistics_equal_dense_counts_for_a_large_vocabulary():
    k, v = 8, 50_000
    cat = CategoricalEmission(k, v)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-1, v, (4, 16), generator=g)
    w = torch.rand(4, 16, k, generator=g)
    got = cat.statistics(x, w)["obs"]
    seen = x >= 0
    dense = torch.nn.functional.one_hot(x[seen], v).float().T @ w[seen]    # (V K)
    torch.testing.assert_close(got, dense.T)


def test_missing_token_is_marginalized_exactly():
    """p(x with x_t missing) = sum over v of p(x with x_t = v)."""
    torch.manual_seed(0)
    model = HMM(3, "categorical", n_symbols=4, dtype="float64")
    log_init, log_trans = random_model(3, seed=1)
    model.set_probabilities(torch.exp(log_init), torch.exp(log_trans))
    with torch.no_grad():
        model.emission.log_emission.copy_(torch.log_softmax(torch.randn(3, 4), 1))
    x = torch.tensor([[1, 3, 0, 2]])
    filled = x.repeat(4, 1)
    filled[:, 2] = torch.arange(4)
    missing = x.clone()
    missing[0, 2] = -1
    with torch.no_grad():
        total = torch.logsumexp(model.posteriors(filled).log_likelihood, 0)
        torch.testing.assert_close(model.posteriors(missing).log_likelihood[0], total)


def test_missing_gaussian_row_is_marginalized_exactly():
    """Numerical integration over the missing value gives the same likelihood."""
    torch.manual_seed(0)
    model = HMM(2, "gaussian", n_features=1, dtype="float64")
    model.set_probabilities(torch.tensor([0.3, 0.7]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    with torch.no_grad():
        model.emission.means.copy_(torch.tensor([[-1.0], [2.0]]))
    grid = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    x = torch.tensor([0.5, 0.0, 1.5], dtype=torch.float64).repeat(len(grid), 1)
    x[:, 1] = grid
    with torch.no_grad():
        dens = torch.exp(model.posteriors(x[..., None]).log_likelihood)
        integral = torch.trapezoid(dens, grid)
        missing = torch.tensor([[[0.5], [torch.nan], [1.5]]], dtype=torch.float64)
        got = torch.exp(model.posteriors(missing).log_likelihood[0])
    torch.testing.assert_close(got, integral, rtol=1e-8, atol=0)


@pytest.mark.parametrize(("emission", "x", "error", "match"), [
    (CategoricalEmission(2, 5), torch.tensor([[0, 5]]), ValueError, "token ids in"),
    (CategoricalEmission(2, 5), torch.tensor([[0, -2]]), ValueError, "token ids in"),
    (CategoricalEmission(2, 5), torch.tensor([[0.0, 1.0]]), TypeError, "integer token ids"),
    (GaussianEmission(2, 2), torch.tensor([[[0.0, torch.nan]]]), ValueError, "partly NaN"),
    (GaussianEmission(2, 2), torch.tensor([[[0.0, torch.inf]]]), ValueError, "infinite"),
    (GaussianEmission(2, 2), torch.zeros(1, 3, 3), ValueError, "2 features"),
    (GaussianEmission(2, 2), torch.zeros(1, 3, 2, dtype=torch.long), TypeError, "dtype"),
    (PoissonEmission(2, 1), torch.tensor([[[-1.0]]]), ValueError, "non-negative integer"),
    (PoissonEmission(2, 1), torch.tensor([[[0.5]]]), ValueError, "non-negative integer"),
])
def test_bad_observations_raise(emission, x, error, match):
    with pytest.raises(error, match=match):
        emission.validate(x)


@pytest.mark.parametrize(("covs", "match"), [
    (torch.tensor([[1.0, 2.0], [2.0, 1.0]]), "positive-definite"),
    (torch.tensor([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
    (torch.eye(3), "expected shape"),
])
def test_bad_covariances_raise(covs, match):
    with pytest.raises(ValueError, match=match):
        GaussianEmission(2, 2, covariance_type="tied").set_covariances(covs)
    with pytest.raises(ValueError, match="positive variances"):
        GaussianEmission(2, 2, covariance_type="diag").set_covariances(-torch.ones(2, 2))


@pytest.mark.parametrize("cov_type", ["spherical", "diag", "full", "tied"])
def test_gaussian_mixture_table_matches_scipy(cov_type):
    from seqprob.hmm import GaussianMixtureEmission

    k, m, d = 2, 3, 2
    rng = np.random.RandomState(0)
    em = GaussianMixtureEmission(k, d, n_mix=m, covariance_type=cov_type).double()
    a = rng.randn(k, m, d, d)
    full = a @ a.transpose(0, 1, 3, 2) + np.eye(d)
    if cov_type == "tied":
        full[:] = full[:, :1]
    covs = {"spherical": full[..., 0, 0], "diag": np.diagonal(full, axis1=2, axis2=3),
            "full": full, "tied": full[:, 0]}[cov_type]
    weights, means = rng.dirichlet(np.ones(m), size=k), rng.randn(k, m, d)
    em.set_parameters(torch.tensor(weights), torch.tensor(means), torch.tensor(covs.copy()))
    shown = {"spherical": full[..., 0, 0, None, None] * np.eye(d),
             "diag": np.diagonal(full, axis1=2, axis2=3)[..., None] * np.eye(d)}
    full = shown.get(cov_type, full)
    x = rng.randn(1, 5, d)
    table = em.log_likelihood(torch.tensor(x))[0].detach().numpy()         # (T K)
    for state in range(k):
        dens = sum(weights[state, j] * stats.multivariate_normal(means[state, j],
                                                                 full[state, j]).pdf(x[0])
                   for j in range(m))
        np.testing.assert_allclose(table[:, state], np.log(dens), rtol=1e-10)
    np.testing.assert_allclose(em.covariances().detach().numpy(), covs, rtol=1e-10)


def test_multinomial_table_matches_scipy_and_zero_probabilities_stay_exact():
    from seqprob.hmm import MultinomialEmission

    em = MultinomialEmission(2, 3).double()
    probs = np.array([[0.2, 0.3, 0.5], [0.0, 0.4, 0.6]])
    with torch.no_grad():
        em.log_emission.copy_(torch.log(torch.tensor(probs)))
    x = np.array([[[1, 2, 3], [0, 1, 1], [2, 0, 0]]], dtype=float)
    table = em.log_likelihood(torch.tensor(x))[0].detach().numpy()
    for state in range(2):
        want = stats.multinomial.logpmf(x[0], x[0].sum(1), probs[state])
        np.testing.assert_allclose(table[:, state], want, rtol=1e-12)
    assert np.isneginf(table[[0, 2], 1]).all() and np.isfinite(table[1]).all()

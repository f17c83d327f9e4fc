"""The scikit-learn estimators: estimator checks, the hmmlearn-style API, persistence,
model selection and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from seqprob.hmm.estimators import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM


# scikit-learn's checks call ``fit(X, y)`` and ``score(X, y)`` with a target in the second
# position, where hmmlearn's API (which these estimators follow) puts ``lengths``. These
# test-only subclasses change nothing but that calling convention, so every check runs on the
# real implementation.
class _SklearnConvention:
    def fit(self, X, y=None, lengths=None):
        return super().fit(X, lengths)

    def partial_fit(self, X, y=None, lengths=None):
        return super().partial_fit(X, lengths)

    def score(self, X, y=None, lengths=None):
        return super().score(X, lengths)


class SklearnGaussianHMM(_SklearnConvention, GaussianHMM):
    pass


class SklearnCategoricalHMM(_SklearnConvention, CategoricalHMM):
    pass


class SklearnPoissonHMM(_SklearnConvention, PoissonHMM):
    pass


class SklearnGMMHMM(_SklearnConvention, GMMHMM):
    pass


class SklearnMultinomialHMM(_SklearnConvention, MultinomialHMM):
    pass


SEQUENCE = ("a sequence model: a sample's posterior and score depend on its neighbours, so "
            "results change when samples are reordered or subset")
# The generic checks feed real-valued data with several columns; categorical symbols are one
# integer column and Poisson counts are non-negative integers, so these checks cannot apply.
DOMAIN = {
    "categorical": "generic data are real-valued with several columns; a categorical HMM takes "
                   "one column of integer symbols",
    "poisson": "generic data are real-valued; a Poisson HMM takes non-negative integer counts",
    "multinomial": "generic data are real-valued; a multinomial HMM takes non-negative integer "
                   "counts",
}
DOMAIN_CHECKS = (
    "check_fit_score_takes_y", "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_estimators_dtypes", "check_dtype_object", "check_pipeline_consistency",
    "check_estimators_nan_inf", "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",
    "check_fit2d_predict1d",
)


def expected_failed_checks(estimator) -> dict[str, str]:
    """Every check skipped for each estimator, with the reason."""
    skipped = {"check_methods_sample_order_invariance": SEQUENCE,
               "check_methods_subset_invariance": SEQUENCE}
    kind = estimator._emission
    if kind in DOMAIN:
        skipped |= dict.fromkeys(DOMAIN_CHECKS, DOMAIN[kind])
        if kind == "categorical":
            skipped["check_positive_only_tag_during_fit"] = (
                "-1 is a valid symbol (missing), so negative input is not refused by tag")
    return skipped


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([SklearnGaussianHMM(random_state=0), SklearnCategoricalHMM(random_state=0),
                          SklearnPoissonHMM(random_state=0), SklearnGMMHMM(2, random_state=0),
                          SklearnMultinomialHMM(random_state=0)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# --- the hmmlearn-style API -----------------------------------------------------------------

def _fitted_gaussian(**kwargs):
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.randn(60, 2) - 3, rng.randn(60, 2) + 3, rng.randn(40, 2) - 3])
    params = dict(n_components=2, n_iter=50, tol=1e-4, random_state=0) | kwargs
    return GaussianHMM(**params).fit(X, [100, 60]), X


def test_fit_recovers_regimes_and_reports_convergence():
    model, X = _fitted_gaussian()
    states = model.predict(X, [100, 60])
    assert len(set(states[:60])) == 1 and states[0] != states[60]
    assert model.converged_ and model.monitor_.converged
    assert np.all(np.diff(model.monitor_.history) > -1e-8)
    assert model.n_iter_ == len(model.monitor_.history)
    assert model.means_.shape == (2, 2) and model.covars_.shape == (2, 2, 2)


def test_not_converging_warns():
    rng = np.random.RandomState(0)
    with pytest.warns(ConvergenceWarning, match="n_iter=1"):
        GaussianHMM(3, n_iter=1, random_state=0).fit(rng.randn(50, 2))


def test_n_init_keeps_the_best_restart():
    rng = np.random.RandomState(1)
    X = np.concatenate([rng.randn(40, 1), rng.randn(40, 1) + 6, rng.randn(40, 1) - 6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = [GaussianHMM(3, n_iter=5, random_state=s).fit(X).monitor_.history[-1]
               for s in range(3)]
        best = GaussianHMM(3, n_iter=5, n_init=3, random_state=0).fit(X)
    assert best.monitor_.history[-1] >= min(one)


def test_parameters_set_by_hand_work_without_fit():
    model = CategoricalHMM(2)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[0.0, 1.0], [1.0, 0.0]])
    model.emissionprob_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    X = np.array([[0], [1], [0]])
    assert model.predict(X).tolist() == [0, 1, 0]
    np.testing.assert_allclose(model.score(X), np.log(0.9 * 0.8 * 0.9))
    np.testing.assert_allclose(model.decode(X, algorithm="map")[0], np.log(0.9 * 0.8 * 0.9))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_and_currstate():
    model, _ = _fitted_gaussian()
    X, Z = model.sample(200, random_state=3)
    assert X.shape == (200, 2) and Z.shape == (200,)
    X2, _ = model.sample(200, random_state=3)
    np.testing.assert_array_equal(X, X2)
    assert model.sample(5, random_state=0, currstate=1)[1][0] == 1
    Xc, _ = CategoricalHMM(2, n_iter=3, random_state=0).fit(
        np.array([[0], [1], [2], [1]])).sample(10, random_state=0)
    assert Xc.shape == (10, 1) and Xc.dtype.kind == "i"


def test_aic_bic_count_free_parameters():
    model, X = _fitted_gaussian(covariance_type="full")
    p = 1 + 2 + 2 * 2 + 2 * 3          # start, transitions, means, full covariances
    score = model.score(X, [100, 60])
    np.testing.assert_allclose(model.aic(X, [100, 60]), -2 * score + 2 * p)
    np.testing.assert_allclose(model.bic(X, [100, 60]), -2 * score + p * np.log(160))


def test_partial_fit_improves_the_fit():
    _, X = _fitted_gaussian()
    online = GaussianHMM(2, random_state=0)
    first = None
    for _ in range(3):
        for start in range(0, 160, 40):
            online.partial_fit(X[start:start + 40])
            first = first if first is not None else online.score(X)
    assert online.score(X) >= first and online.n_updates_ == 12


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_missing_rows_are_accepted_in_fit_and_score():
    model, X = _fitted_gaussian()
    Xm = X.copy()
    Xm[5] = np.nan
    assert np.isfinite(model.score(Xm, [100, 60]))
    assert model.score(Xm, [100, 60]) > model.score(X, [100, 60]) - 50
    refit = clone(model).set_params(n_iter=3).fit(Xm, [100, 60])
    assert np.isfinite(refit.means_).all()


@pytest.mark.parametrize("cls", [GaussianHMM, CategoricalHMM, PoissonHMM, GMMHMM,
                                 MultinomialHMM])
def test_save_and_load_round_trip(cls, tmp_path):
    rng = np.random.RandomState(0)
    X = {GaussianHMM: rng.randn(40, 2), CategoricalHMM: rng.randint(0, 4, (40, 1)),
         PoissonHMM: rng.poisson(2, (40, 2)), GMMHMM: rng.randn(40, 2),
         MultinomialHMM: rng.multinomial(5, [0.2, 0.3, 0.5], size=40)}[cls]
    extra = {GMMHMM: {"n_mix": 2, "covariance_type": "full"},
             MultinomialHMM: {"n_trials": np.full(40, 5)}}.get(cls, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = cls(2, random_state=0, n_iter=3, **extra).fit(X)
    model.save(tmp_path / "m.safetensors")
    again = cls.load(tmp_path / "m.safetensors")
    np.testing.assert_equal(again.get_params(), model.get_params())
    np.testing.assert_allclose(again.score(X), model.score(X))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize(("lengths", "match"), [
    ([10, 5], "summing to 20"), ([20, 0], "positive"), ([25, -5], "positive"),
    ([[10, 10]], "1-D"), ([10.0, 10.0], "integers"),
])
def test_bad_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        GaussianHMM(2).fit(np.random.RandomState(0).randn(20, 2), lengths)


def test_bad_constructor_arguments():
    X = np.zeros((10, 1))
    with pytest.raises(ValueError, match="n_components"):
        GaussianHMM(0).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianHMM(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="params"):
        GaussianHMM(2, params="stx").fit(X)
    with pytest.raises(ValueError, match="transmat_prior"):
        GaussianHMM(2, transmat_prior=0.5).fit(X)


def test_bad_user_parameters_are_refused_when_set():
    model = CategoricalHMM(2)
    with pytest.raises(ValueError, match=r"startprob_: expected non-negative rows summing to 1"):
        model.startprob_ = np.array([0.5, 0.6])
    with pytest.raises(ValueError, match=r"transmat_: expected non-negative rows summing to 1"):
        model.transmat_ = np.array([[0.5, 0.5], [0.9, 0.2]])
    with pytest.raises(ValueError, match=r"transmat_: expected shape \(n_components, "
                                         r"n_components\) with n_components=2, got \(3, 3\)"):
        model.transmat_ = np.eye(3)
    with pytest.raises(ValueError, match="emissionprob_"):
        model.emissionprob_ = np.full((2, 3), 0.5)
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.eye(2)
    model.emissionprob_ = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"symbols in \[0, 3\)"):
        model.score(np.array([[3]]))
    with pytest.raises(ValueError, match="NaN"):
        GaussianHMM(2).fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        PoissonHMM(2).fit(np.array([[1.5], [2.0]]))


def test_values_changed_in_place_are_checked_at_use():
    model = CategoricalHMM(2)
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.eye(2)
    model.emissionprob_ = np.full((2, 3), 1 / 3)
    model.transmat_[0, 0] = 0.2
    with pytest.raises(ValueError, match="transmat_: expected non-negative rows summing to 1"):
        model.score(np.array([[0]]))


def test_degenerate_data_gives_finite_parameters():
    X = np.ones((30, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in (GaussianHMM(3, random_state=0), PoissonHMM(3, random_state=0),
                      CategoricalHMM(3, random_state=0)):
            data = X[:, :1].astype(int) if isinstance(model, CategoricalHMM) else X
            model.fit(data)
            assert all(np.isfinite(getattr(model, n)).all() for n in model._param_names
                       if n != "emissionprob_")
            assert not np.isnan(model.transmat_).any()


# --- invalid values: refused when set, at use and on load ------------------------------------

def _hand_set_gaussian(**kwargs):
    model = GaussianHMM(2, **kwargs)
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    model.means_ = np.array([[0.0], [3.0]])
    model.covars_ = np.array([[1.0], [1.0]])
    return model


@pytest.mark.parametrize(("name", "value", "match"), [
    ("means_", np.array([[np.nan], [3.0]]), "means_: expected finite values"),
    ("covars_", np.array([[-1.0], [1.0]]), "covars_: expected positive variances"),
    ("covars_", np.array([[np.nan], [1.0]]), r"covars_ \('diag'\): expected finite"),
    ("startprob_", np.array([np.nan, 1.0]), "startprob_: expected finite values"),
    ("transmat_", np.array([[1.5, -0.5], [0.5, 0.5]]), "transmat_: expected non-negative"),
])
def test_invalid_gaussian_values_are_refused_when_set(name, value, match):
    model = _hand_set_gaussian()
    with pytest.raises(ValueError, match=match):
        setattr(model, name, value)


def test_nan_means_changed_in_place_give_an_error_not_a_score():
    model = _hand_set_gaussian()
    X = np.array([[0.1], [2.9]])
    assert np.isfinite(model.score(X))
    model.means_[0, 0] = np.nan
    for method in (model.score, model.predict, model.decode):
        with pytest.raises(ValueError, match="means_: expected finite values"):
            method(X)


@pytest.mark.parametrize(("model", "name", "value", "match"), [
    (PoissonHMM(2), "lambdas_", np.array([[-1.0], [2.0]]), "lambdas_: expected values >= 0"),
    (PoissonHMM(2), "lambdas_", np.array([[np.inf], [2.0]]), "lambdas_: expected finite"),
    (CategoricalHMM(2), "emissionprob_", np.array([[np.nan, 1], [0.5, 0.5]]), "finite"),
    (CategoricalHMM(2), "emissionprob_", np.array([0.5, 0.5]), r"shape \(n_components, n\)"),
    (GaussianHMM(2, covariance_type="full"), "covars_", np.array([[[1, 2], [2, 1]]] * 2),
     "positive-definite"),
    (GaussianHMM(2, covariance_type="tied"), "covars_", np.array([[1, 0.5], [0, 1]]),
     "symmetric"),
])
def test_invalid_values_of_other_families_are_refused(model, name, value, match):
    with pytest.raises(ValueError, match=match):
        setattr(model, name, value)


def test_n_features_is_inferred_from_a_hand_set_emissionprob():
    model = CategoricalHMM(2)
    model.emissionprob_ = np.full((2, 4), 0.25)
    assert model.n_features == 4


def test_an_inferred_vocabulary_is_bounded_with_an_error_naming_n_features():
    X = np.array([[0], [1], [10**8]])
    with pytest.raises(ValueError, match=r"vocabulary of 100000001 symbols.*n_features"):
        CategoricalHMM(2).fit(X)
    model = CategoricalHMM(2, n_features=10**8 + 1, n_iter=1)
    assert model._check_X(X, reset=True).max() == 10**8  # explicit n_features: the user's call


def _write(tmp_path, tensors, params, kind="estimator.GaussianHMM", n_in=1):
    import torch

    from seqprob.core.persist import save_checkpoint

    tensors = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
    return save_checkpoint(tmp_path / "m.safetensors", tensors, kind=kind,
                           config={"params": params, "n_features_in": n_in})


def test_hostile_estimator_files_are_refused(tmp_path):
    good = _hand_set_gaussian()
    tensors = {name: good._raw(name) for name in good._param_names}
    params = good.get_params()
    cases = [
        ({**tensors, "fit": np.zeros(1)}, params, r"expected the tensors .* got .*'fit'"),
        ({**tensors, "means_": np.array([[np.nan], [0.0]])}, params, "means_: expected finite"),
        (tensors, {**params, "__class__": 1}, r"takes no argument\(s\) \['__class__'\]"),
        (tensors, {**params, "n_components": -3}, "n_components"),
        (tensors, {**params, "n_components": 3}, r"startprob_: expected shape"),
        ({**tensors, "covars_": np.ones((2, 5))}, params, "covars: expected shape"),
    ]
    for bad_tensors, bad_params, match in cases:
        path = _write(tmp_path, bad_tensors, bad_params)
        with pytest.raises(ValueError, match=match):
            GaussianHMM.load(path)
    path = _write(tmp_path, tensors, params, n_in=2.5)
    with pytest.raises(TypeError, match="n_features_in"):
        GaussianHMM.load(path)
    assert callable(GaussianHMM.load(_write(tmp_path, tensors, params)).fit)


def test_sample_errors_name_the_user_facing_arguments():
    model = _hand_set_gaussian()
    with pytest.raises(ValueError, match="n_samples"):
        model.sample(0)
    with pytest.raises(ValueError, match="currstate"):
        model.sample(3, currstate=2)

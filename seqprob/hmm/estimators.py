"""scikit-learn estimators with hmmlearn's names: ``CategoricalHMM``, ``GaussianHMM``,
``PoissonHMM``.

Data are hmmlearn-style: ``X`` of shape ``(n_samples, n_features)`` holding one or more
sequences back to back, ``lengths`` their lengths (``None``: one sequence). Parameters live in
hmmlearn's attributes (``startprob_``, ``transmat_``, ``emissionprob_``, ``means_``,
``covars_``, ``lambdas_``); set them by hand and every method works without ``fit``. The
computation runs on a :class:`~seqprob.hmm.model.HMM` built from those attributes.

Differences from hmmlearn, on purpose:

- ``decode(algorithm="map")`` returns log p(X, path) of the decoded path (comparable with
  Viterbi's); hmmlearn 0.3.3 returns the sum of the maximal posterior *probabilities*.
- ``converged_`` is True only when the tolerance was reached (hmmlearn's monitor also calls
  reaching ``n_iter`` converged); otherwise ``fit`` warns with ``ConvergenceWarning``.
- Dirichlet priors below 1 (negative pseudocounts) are refused instead of clipped.
- States that receive no data keep their previous parameters instead of becoming NaN.
- ``monitor_.history`` keeps every iteration's log-likelihood (hmmlearn keeps two).
"""

from __future__ import annotations

import os
import sys
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from seqprob.core.persist import load_checkpoint, save_checkpoint
from seqprob.core.validation import check_lengths
from seqprob.hmm import em
from seqprob.hmm.emissions import COVARIANCE_TYPES
from seqprob.hmm.model import HMM

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dirichlet(rng: np.random.RandomState, k: int, rows: int | None) -> np.ndarray:
    """A Dirichlet(1/K) draw (hmmlearn's start) lifted off exact zeros, which EM could never
    leave: user-set zeros are structural, drawn ones are not."""
    value = np.maximum(rng.dirichlet(np.full(k, 1.0 / k), size=rows), 1e-12)
    return value / value.sum(-1, keepdims=True)


class ConvergenceMonitor:
    """Log-likelihood per EM iteration; ``converged`` once an iteration gains less than
    ``tol``. ``history`` holds every reported value."""

    def __init__(self, tol: float, n_iter: int, verbose: bool):
        self.tol, self.n_iter, self.verbose = tol, n_iter, verbose
        self.history: list[float] = []

    def __repr__(self) -> str:
        return (f"ConvergenceMonitor(tol={self.tol}, n_iter={self.n_iter}, iter={self.iter}, "
                f"converged={self.converged})")

    @property
    def iter(self) -> int:
        return len(self.history)

    def report(self, log_prob: float) -> None:
        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else float("nan")
            print(f"{self.iter + 1:>10d} {log_prob:>16.8f} {delta:>+16.8f}", file=sys.stderr)
        self.history.append(float(log_prob))

    @property
    def converged(self) -> bool:
        return len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol


class _BaseHMM(BaseEstimator):
    """EM loop, inference methods, persistence; subclasses define the emission family."""

    _emission = ""
    _letters = "st"
    _param_names: tuple[str, ...] = ("startprob_", "transmat_")
    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "startprob_prior": [Interval(Real, 1, None, closed="left")],
        "transmat_prior": [Interval(Real, 1, None, closed="left")],
        "algorithm": [StrOptions({"viterbi", "map"})],
        "random_state": ["random_state"],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "params": [str],
        "init_params": [str],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [str],
    }

    # --- to implement per family -----------------------------------------------------------
    def _check_X(self, X, *, reset: bool) -> np.ndarray:
        raise NotImplementedError

    def _model_options(self, dims: dict) -> dict:
        raise NotImplementedError

    def _set_emission(self, model: HMM) -> None:
        raise NotImplementedError

    def _get_emission(self, model: HMM) -> None:
        raise NotImplementedError

    def _init_emission(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        raise NotImplementedError

    def _dims(self) -> dict:
        raise NotImplementedError

    # --- plumbing --------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return all(hasattr(self, name) for name in self._param_names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is accepted only as a whole missing row, so the generic NaN checks must not
        # treat it as allowed; counts are non-negative
        tags.input_tags.allow_nan = False
        tags.input_tags.positive_only = self._emission == "poisson"
        tags.non_deterministic = False
        return tags

    def _check_letters(self) -> None:
        for name in ("params", "init_params"):
            bad = set(getattr(self, name)) - set(self._letters)
            if bad:
                raise ValueError(f"{name}: expected letters from {self._letters!r}, got "
                                 f"{getattr(self, name)!r}")

    def _model(self) -> HMM:
        """An HMM holding this estimator's current parameters (validated)."""
        check_is_fitted(self, self._param_names)
        k = self.n_components
        start = np.asarray(self.startprob_, dtype=float)
        trans = np.asarray(self.transmat_, dtype=float)
        if start.shape != (k,):
            raise ValueError(f"startprob_: expected shape ({k},), got {start.shape}")
        if trans.shape != (k, k):
            raise ValueError(f"transmat_: expected shape ({k}, {k}), got {trans.shape}")
        dims = self._dims()
        model = HMM(k, self._emission, dtype=self.dtype, **dims, start_pseudocount=float(
            self.startprob_prior - 1), trans_pseudocount=float(self.transmat_prior - 1),
            emission_options=self._model_options(dims))
        model.set_probabilities(torch.from_numpy(start), torch.from_numpy(trans))
        self._set_emission(model)
        return model.to(self.device).requires_grad_(False)

    def _store(self, model: HMM) -> None:
        self.startprob_ = torch.exp(model.log_startprob).cpu().double().numpy()
        self.transmat_ = torch.exp(model.log_transmat).cpu().double().numpy()
        self._get_emission(model)

    def _tensors(self, X: np.ndarray, lengths) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Flat ``X`` -> padded ``(B, T, ...)`` tensor, lengths ``(B,)``, mask ``(B, T)``."""
        lens = check_lengths(lengths, X.shape[0])
        length = int(lens.max())
        mask = np.arange(length)[None, :] < lens[:, None]                   # (B T)
        if self._emission == "categorical":
            padded = np.full(mask.shape, -1, dtype=np.int64)
            padded[mask] = X[:, 0]
        else:
            padded = np.full((*mask.shape, X.shape[1]), np.nan)
            padded[mask] = X
        dtype = torch.long if self._emission == "categorical" else _DTYPES[self.dtype]
        x = torch.as_tensor(padded, dtype=dtype, device=self.device)
        return x, torch.as_tensor(lens, device=self.device), mask

    def _init(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        k = self.n_components
        if "s" in self.init_params or not hasattr(self, "startprob_"):
            self.startprob_ = _dirichlet(rng, k, None)
        if "t" in self.init_params or not hasattr(self, "transmat_"):
            self.transmat_ = _dirichlet(rng, k, k)
        self._init_emission(X, rng)

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, X, lengths=None):
        """Estimate parameters by EM (``n_init`` restarts, the best log-likelihood kept)."""
        self._validate_params()
        self._check_letters()
        X = self._check_X(X, reset=True)
        x, lens, _ = self._tensors(X, lengths)
        rng = check_random_state(self.random_state)
        best = None
        for _ in range(self.n_init):
            self._init(X, rng)
            model = self._model()
            x = model.emission.validate(x)
            monitor = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
            for _ in range(self.n_iter):
                stats = em.expected_statistics(model, x, lens, validate=False)
                em.maximize(model, stats, self.params)  # then report, as hmmlearn does
                monitor.report(float(stats.log_likelihood))
                if monitor.converged:
                    break
            if best is None or monitor.history[-1] > best[1].history[-1]:
                best = (model, monitor)
        model, self.monitor_ = best
        self.converged_ = self.monitor_.converged
        self.n_iter_ = self.monitor_.iter
        self._store(model)
        if not self.converged_:
            warnings.warn(f"EM did not converge within n_iter={self.n_iter} iterations "
                          f"(tol={self.tol}); increase n_iter or tol", ConvergenceWarning,
                          stacklevel=2)
        return self

    def partial_fit(self, X, lengths=None):
        """One stepwise-EM update from a minibatch (initializes on the first call)."""
        self._validate_params()
        self._check_letters()
        first = not hasattr(self, "n_updates_")
        X = self._check_X(X, reset=first)
        x, lens, _ = self._tensors(X, lengths)
        if first:
            self._init(X, check_random_state(self.random_state))
            self.n_updates_, self._running = 0, None
        model = self._model()
        stats = em.expected_statistics(model, x, lens)
        self._running = em.stepwise_update(self._running, stats, em.step_size(self.n_updates_))
        em.maximize(model, self._running, self.params)
        self.n_updates_ += 1
        self._store(model)
        return self

    # --- inference -------------------------------------------------------------------------
    def _posteriors(self, X, lengths):
        model = self._model()
        X = self._check_X(X, reset=False)
        x, lens, mask = self._tensors(X, lengths)
        with torch.no_grad():
            post = model.posteriors(x, lens)
        return post, mask

    def score_samples(self, X, lengths=None):
        """``(log p(X), posteriors (n_samples, n_components))``."""
        post, mask = self._posteriors(X, lengths)
        return float(post.log_likelihood.sum()), post.smoothed.cpu().double().numpy()[mask]

    def score(self, X, lengths=None) -> float:
        """log p(X) summed over the sequences."""
        post, _ = self._posteriors(X, lengths)
        return float(post.log_likelihood.sum())

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """Smoothing posteriors p(z_t | sequence): (n_samples, n_components)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """``(log p(X, path), path (n_samples,))`` by Viterbi or pointwise MAP."""
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm: expected 'viterbi' or 'map', got {algorithm!r}")
        model = self._model()
        X = self._check_X(X, reset=False)
        x, lens, mask = self._tensors(X, lengths)
        with torch.no_grad():
            out = model.decode(x, lens, algorithm=algorithm)
        return float(out.log_prob.sum()), out.path.cpu().numpy()[mask]

    def predict(self, X, lengths=None) -> np.ndarray:
        """The decoded state of every sample (``algorithm``)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """``(X (n_samples, ...), states (n_samples,))`` from one sequence of the model;
        ``currstate`` fixes the first state."""
        model = self._model()
        rng = check_random_state(self.random_state if random_state is None else random_state)
        gen = torch.Generator(device=self.device).manual_seed(int(rng.randint(2**31 - 1)))
        obs, path = model.sample(int(n_samples), 1, generator=gen, first_state=currstate)
        obs = obs[0].cpu().numpy()
        return (obs[:, None] if obs.ndim == 1 else obs), path[0].cpu().numpy()

    # --- model selection -------------------------------------------------------------------
    def _n_parameters(self) -> int:
        k = self.n_components
        count = (k - 1 if "s" in self.params else 0) + (k * (k - 1) if "t" in self.params
                                                         else 0)
        return count + self._model().emission.n_parameters(self.params)

    def aic(self, X, lengths=None) -> float:
        """Akaike information criterion: -2 log p(X) + 2 p."""
        return -2 * self.score(X, lengths=lengths) + 2 * self._n_parameters()

    def bic(self, X, lengths=None) -> float:
        """Bayesian information criterion: -2 log p(X) + p log(n_samples)."""
        n = self._check_X(X, reset=False).shape[0]
        return -2 * self.score(X, lengths=lengths) + self._n_parameters() * np.log(n)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the constructor arguments and fitted parameters to one safetensors file."""
        check_is_fitted(self, self._param_names)
        params = self.get_params()
        if not isinstance(params["random_state"], int | type(None)):
            params["random_state"] = None
        tensors = {name: torch.as_tensor(np.asarray(getattr(self, name)))
                   for name in self._param_names}
        return save_checkpoint(path, tensors, kind=f"estimator.{type(self).__name__}",
                               config={"params": params, "n_features_in": getattr(
                                   self, "n_features_in_", None)})

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Rebuild an estimator written by :meth:`save`."""
        tensors, config, _ = load_checkpoint(path, kind=f"estimator.{cls.__name__}")
        est = cls(**config["params"])
        for name, value in tensors.items():
            setattr(est, name, value.numpy())
        if config.get("n_features_in") is not None:
            est.n_features_in_ = config["n_features_in"]
        return est


_COMMON = ("algorithm", "random_state", "n_iter", "tol", "verbose", "params", "init_params",
           "n_init", "dtype", "device")


class CategoricalHMM(_BaseHMM):
    """HMM over symbols ``0 .. n_features - 1``; ``X`` is ``(n_samples, 1)`` integers, -1 for
    a missing observation. ``emissionprob_`` is ``(n_components, n_features)``."""

    _emission = "categorical"
    _letters = "ste"
    _param_names = ("startprob_", "transmat_", "emissionprob_")
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "emissionprob_prior": [Interval(Real, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_components=1, *, startprob_prior=1.0, transmat_prior=1.0,
                 emissionprob_prior=1.0, n_features=None, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="ste",
                 init_params="ste", n_init=1, dtype="float64", device="cpu"):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.n_init = n_init
        self.dtype = dtype
        self.device = device

    def _check_X(self, X, *, reset):
        X = validate_data(self, X, reset=reset, dtype=None, ensure_min_samples=1) \
            if reset or hasattr(self, "n_features_in_") else check_array(X, dtype=None)
        if X.shape[1] != 1:
            raise ValueError(f"X: expected shape (n_samples, 1) of symbols, got {X.shape}")
        if not np.issubdtype(X.dtype, np.integer):
            if not np.issubdtype(X.dtype, np.floating) or not np.all(X == np.round(X)):
                raise ValueError(f"X: expected integer symbols, got dtype {X.dtype}")
            X = X.astype(np.int64)
        if (X < -1).any():
            raise ValueError(f"X: expected symbols >= 0 (or -1 for missing), got {X.min()}")
        n_symbols = self._n_symbols(X, fresh=reset and "e" in self.init_params)
        if (X >= n_symbols).any():
            raise ValueError(f"X: expected symbols in [0, {n_symbols}), got {X.max()}")
        return X.astype(np.int64)

    def _n_symbols(self, X=None, *, fresh: bool = False) -> int:
        """Vocabulary size: the parameters' unless they are about to be re-initialized."""
        if hasattr(self, "emissionprob_") and not fresh:
            return np.asarray(self.emissionprob_).shape[1]
        if self.n_features is not None:
            return self.n_features
        return int(X.max()) + 1 if X is not None else 1

    def _dims(self):
        return {"n_symbols": self._n_symbols()}

    def _model_options(self, dims):
        return {"pseudocount": float(self.emissionprob_prior - 1)}

    def _set_emission(self, model):
        probs = torch.as_tensor(np.asarray(self.emissionprob_, dtype=float))
        if tuple(probs.shape) != (self.n_components, model.emission.n_symbols):
            raise ValueError(f"emissionprob_: expected shape ({self.n_components}, "
                             f"n_features), got {tuple(probs.shape)}")
        sums = probs.sum(-1, keepdim=True)
        if (probs < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
            raise ValueError("emissionprob_: expected rows of non-negative entries summing "
                             f"to 1, got sums {sums.flatten()[:8].tolist()}")
        with torch.no_grad():
            model.emission.log_emission.copy_(torch.log(probs / sums))

    def _get_emission(self, model):
        self.emissionprob_ = torch.exp(model.emission.log_emission).cpu().double().numpy()

    def _init_emission(self, X, rng):
        if "e" in self.init_params or not hasattr(self, "emissionprob_"):
            probs = rng.rand(self.n_components, self._n_symbols(X, fresh=True))
            self.emissionprob_ = probs / probs.sum(1, keepdims=True)


class GaussianHMM(_BaseHMM):
    """HMM with Gaussian emissions; rows of ``X`` that are entirely NaN are missing.

    ``covars_`` reads as full matrices ``(n_components, n_features, n_features)`` and is set
    in the type-specific shape, as in hmmlearn: spherical ``(n_components,)``, diag
    ``(n_components, n_features)``, full ``(n_components, n_features, n_features)``, tied
    ``(n_features, n_features)``. Means start from k-means.
    """

    _emission = "gaussian"
    _letters = "stmc"
    _param_names = ("startprob_", "transmat_", "means_", "_covars_")
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "means_prior": [Real],
        "means_weight": [Interval(Real, 0, None, closed="left")],
        "covars_prior": [Real],
        "covars_weight": [Real],
    }

    def __init__(self, n_components=1, *, covariance_type="diag", min_covar=1e-3,
                 startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
                 covars_prior=1e-2, covars_weight=1, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, verbose=False, params="stmc", init_params="stmc",
                 n_init=1, dtype="float64", device="cpu"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.n_init = n_init
        self.dtype = dtype
        self.device = device

    @property
    def covars_(self) -> np.ndarray:
        """Full covariance matrices (n_components, n_features, n_features)."""
        cov = np.asarray(self._covars_, dtype=float)
        k = self.n_components
        if self.covariance_type == "spherical":
            d = np.asarray(self.means_).shape[1]
            return cov[:, None, None] * np.eye(d)[None]
        if self.covariance_type == "diag":
            return np.stack([np.diag(c) for c in cov])
        if self.covariance_type == "tied":
            return np.repeat(cov[None], k, axis=0)
        return cov

    @covars_.setter
    def covars_(self, value) -> None:
        self._covars_ = np.array(value, dtype=float, copy=True)

    def _check_X(self, X, *, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32],
                          ensure_all_finite="allow-nan")
        if np.isinf(X).any():
            raise ValueError("X: expected finite values (or all-NaN rows for missing), got "
                             "infinite entries")
        nan = np.isnan(X)
        if (nan.any(1) & ~nan.all(1)).any():
            raise ValueError("X: expected no NaN except rows that are entirely NaN (missing "
                             "observations)")
        return X.astype(np.float64)

    def _dims(self):
        return {"n_features": np.asarray(self.means_).shape[1],
                "covariance_type": self.covariance_type}

    def _model_options(self, dims):
        return {"means_prior": float(self.means_prior), "means_weight": float(
            self.means_weight), "covars_prior": float(self.covars_prior),
            "covars_weight": float(self.covars_weight), "min_covar": float(self.min_covar)}

    def _set_emission(self, model):
        means = torch.as_tensor(np.asarray(self.means_, dtype=float))
        if tuple(means.shape) != (self.n_components, model.emission.n_features):
            raise ValueError(f"means_: expected shape ({self.n_components}, n_features), got "
                             f"{tuple(means.shape)}")
        with torch.no_grad():
            model.emission.means.copy_(means)
        model.emission.set_covariances(torch.as_tensor(np.asarray(self._covars_, dtype=float)))

    def _get_emission(self, model):
        self.means_ = model.emission.means.detach().cpu().double().numpy()
        self._covars_ = model.emission.covariances().detach().cpu().double().numpy()

    def _init_emission(self, X, rng):
        from sklearn.cluster import KMeans

        seen = X[~np.isnan(X).any(1)]
        if len(seen) == 0:
            raise ValueError("X: every observation is missing; nothing to initialize from")
        k, d = self.n_components, X.shape[1]
        if "m" in self.init_params or not hasattr(self, "means_"):
            n_clusters = min(k, len(np.unique(seen, axis=0)))
            centers = KMeans(n_clusters, n_init=1, random_state=rng).fit(seen).cluster_centers_
            extra = seen[rng.randint(len(seen), size=k - n_clusters)]
            self.means_ = np.concatenate([centers, extra])
        if "c" in self.init_params or not hasattr(self, "_covars_"):
            cov = (np.atleast_2d(np.cov(seen.T)) if len(seen) > 1 else np.zeros((d, d)))
            cov = cov + self.min_covar * np.eye(d)
            self._covars_ = {"spherical": np.full(k, cov.diagonal().mean()),
                             "diag": np.tile(np.diag(cov), (k, 1)),
                             "full": np.tile(cov, (k, 1, 1)),
                             "tied": cov}[self.covariance_type]


class PoissonHMM(_BaseHMM):
    """HMM with independent Poisson counts per feature; ``lambdas_`` (n_components,
    n_features); rows of ``X`` that are entirely NaN are missing."""

    _emission = "poisson"
    _letters = "stl"
    _param_names = ("startprob_", "transmat_", "lambdas_")
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "lambdas_prior": [Interval(Real, 0, None, closed="left")],
        "lambdas_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=1, *, startprob_prior=1.0, transmat_prior=1.0,
                 lambdas_prior=0.0, lambdas_weight=0.0, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="stl",
                 init_params="stl", n_init=1, dtype="float64", device="cpu"):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.n_init = n_init
        self.dtype = dtype
        self.device = device

    def _check_X(self, X, *, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32, np.int64,
                                                       np.int32], ensure_all_finite="allow-nan")
        X = X.astype(np.float64)
        nan = np.isnan(X)
        if (nan.any(1) & ~nan.all(1)).any():
            raise ValueError("X: expected no NaN except rows that are entirely NaN (missing "
                             "observations)")
        seen = X[~nan]
        if np.isinf(seen).any() or (seen < 0).any() or (seen != np.round(seen)).any():
            raise ValueError("X: expected non-negative integer counts (Negative values in data "
                             "or non-integers are refused)")
        return X

    def _dims(self):
        return {"n_features": np.asarray(self.lambdas_).shape[1]}

    def _model_options(self, dims):
        return {"lambdas_prior": float(self.lambdas_prior),
                "lambdas_weight": float(self.lambdas_weight)}

    def _set_emission(self, model):
        lambdas = torch.as_tensor(np.asarray(self.lambdas_, dtype=float))
        if tuple(lambdas.shape) != (self.n_components, model.emission.n_features):
            raise ValueError(f"lambdas_: expected shape ({self.n_components}, n_features), "
                             f"got {tuple(lambdas.shape)}")
        if (lambdas < 0).any() or not torch.isfinite(lambdas).all():
            raise ValueError("lambdas_: expected finite non-negative rates")
        with torch.no_grad():
            model.emission.log_rate.copy_(
                torch.log(lambdas.clamp_min(torch.finfo(lambdas.dtype).tiny)))

    def _get_emission(self, model):
        self.lambdas_ = torch.exp(model.emission.log_rate).detach().cpu().double().numpy()

    def _init_emission(self, X, rng):
        if "l" in self.init_params or not hasattr(self, "lambdas_"):
            seen = X[~np.isnan(X).any(1)]
            if len(seen) == 0:
                raise ValueError("X: every observation is missing; nothing to initialize from")
            mean, var = seen.mean(), seen.var()
            shape = (self.n_components, X.shape[1])
            if var > 0 and mean > 0:
                self.lambdas_ = rng.gamma(mean**2 / var, var / mean, size=shape)
            else:
                self.lambdas_ = np.full(shape, mean)

"""scikit-learn estimators with hmmlearn's names and positional arguments: ``CategoricalHMM``,
``GaussianHMM``, ``GMMHMM``, ``MultinomialHMM``, ``PoissonHMM``.

Data are hmmlearn-style: ``X`` of shape ``(n_samples, n_features)`` holding one or more
sequences back to back, ``lengths`` their lengths (``None``: one sequence). Parameters live in
hmmlearn's attributes (``startprob_``, ``transmat_``, ``emissionprob_``, ``means_``,
``covars_``, ``lambdas_``); set them by hand and every method works without ``fit``. The
computation runs on a :class:`~seqprob.hmm.model.HMM` built from those attributes. Every
fitted attribute is validated when set (shape, finiteness, rows summing to 1, positive
(definite) covariances) and again, with the shapes checked against each other, at use.
hmmlearn's log messages (parameters overwritten by ``init_params``, too little data, a
decreasing log-likelihood) go to the ``logging`` logger ``seqprob.hmm.estimators``.

Differences from hmmlearn, on purpose:

- ``decode(algorithm="map")`` returns log p(X, path) of the decoded path (comparable with
  Viterbi's); hmmlearn 0.3.3 returns the sum of the maximal posterior *probabilities*.
- ``converged_`` is True only when the tolerance was reached (hmmlearn's monitor also calls
  reaching ``n_iter`` converged); otherwise ``fit`` warns with ``ConvergenceWarning``.
- Dirichlet priors below 1 (negative pseudocounts) are refused instead of clipped.
- States that receive no data keep their previous parameters instead of becoming NaN.
- ``monitor_.history`` keeps every iteration's log-likelihood (hmmlearn keeps two).
- ``implementation`` ("log" or "scaling") is accepted and stored; both run the same
  log-space code.
- A vocabulary inferred from data (``CategoricalHMM`` with ``n_features=None``) is capped at
  65536 symbols; pass ``n_features`` for a larger one.
- Values set on fitted attributes are refused at once when invalid (hmmlearn checks at use).
- ``MultinomialHMM`` logs no notice about hmmlearn 0.3's change of meaning; ``GMMHMM``
  counts ``n_components * (n_mix - 1)`` free weights (hmmlearn counts ``n_mix - 1``) and
  floors updated variances at ``min_covar`` (hmmlearn lets them reach 0).
- Priors are scalars (hmmlearn also takes per-state arrays).
"""

from __future__ import annotations

import logging
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

from seqprob.core.constraints import DeviceString
from seqprob.core.persist import check_config, load_checkpoint, save_checkpoint
from seqprob.core.validation import check_int, check_lengths
from seqprob.hmm import em
from seqprob.hmm.emissions import COVARIANCE_TYPES
from seqprob.hmm.model import HMM

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_log = logging.getLogger(__name__)
MAX_INFERRED_SYMBOLS = 2**16


def _dirichlet(rng: np.random.RandomState, k: int, rows: int | None) -> np.ndarray:
    """A Dirichlet(1/K) draw (hmmlearn's start) lifted off exact zeros, which EM could never
    leave: user-set zeros are structural, drawn ones are not."""
    value = np.maximum(rng.dirichlet(np.full(k, 1.0 / k), size=rows), 1e-12)
    return value / value.sum(-1, keepdims=True)


# --- fitted attributes, validated when set -------------------------------------------------
class _Fitted:
    """A fitted array attribute checked by ``check(estimator, name, value)`` whenever it is
    set; the checked copy is stored in ``_<name>``."""

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.slot]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute "
                                 f"{self.name!r}") from None

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = self.check(obj, self.name, value)


def _finite(est, name: str, value, shape: tuple) -> np.ndarray:
    """``value`` as a float array of ``shape`` (``"k"``: n_components, None: any), finite."""
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an array of numbers, got "
                        f"{type(value).__name__}") from None
    want = tuple(est.n_components if d == "k" else d for d in shape)
    if arr.ndim != len(want) or any(w is not None and w != g for w, g in zip(want, arr.shape,
                                                                              strict=False)):
        text = ", ".join("n_components" if d == "k" else "n" if d is None else str(d)
                         for d in shape)
        raise ValueError(f"{name}: expected shape ({text}) with n_components="
                         f"{est.n_components}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or infinite entries")
    return arr


def _stochastic(*shape):
    """Check: rows of non-negative probabilities summing to 1."""
    def check(est, name, value):
        arr = _finite(est, name, value, shape)
        sums = arr.sum(-1)
        if (arr < 0).any() or not np.allclose(sums, 1.0, rtol=0, atol=1e-5):
            raise ValueError(f"{name}: expected non-negative rows summing to 1, got sums "
                             f"{np.ravel(sums)[:8].tolist()}")
        return arr
    return check


def _real(*shape, low: float | None = None):
    """Check: finite values of ``shape`` (at least ``low``)."""
    def check(est, name, value):
        arr = _finite(est, name, value, shape)
        if low is not None and (arr < low).any():
            raise ValueError(f"{name}: expected values >= {low}, got {arr.min()}")
        return arr
    return check


def _covariances(shapes: dict):
    """Check: covariances in the layout of ``est.covariance_type`` (``shapes`` by type):
    positive variances, or symmetric positive-definite matrices."""
    def check(est, name, value):
        kind = est.covariance_type
        arr = _finite(est, f"{name} ({kind!r})", value, shapes[kind])
        if kind in ("spherical", "diag"):
            if (arr <= 0).any():
                raise ValueError(f"{name}: expected positive variances, got {arr.min()}")
            return arr
        if not np.allclose(arr, np.swapaxes(arr, -1, -2)):
            raise ValueError(f"{name}: expected symmetric matrices")
        if (np.linalg.eigvalsh(arr) <= 0).any():
            raise ValueError(f"{name}: expected positive-definite matrices")
        return arr
    return check


def _full_covariances(cov: np.ndarray, kind: str, k: int, d: int) -> np.ndarray:
    """hmmlearn's full form (k, d, d) of GaussianHMM covariances stored as ``kind``."""
    if kind == "spherical":
        return cov[:, None, None] * np.eye(d)[None]
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    if kind == "tied":
        return np.repeat(cov[None], k, axis=0)
    return cov


class _GaussianCovariances(_Fitted):
    """GaussianHMM's ``covars_``: set in the type-specific layout, read in full form."""

    def __get__(self, obj, owner=None):
        cov = super().__get__(obj, owner)
        if obj is None:
            return cov
        return _full_covariances(cov, obj.covariance_type, obj.n_components, obj.n_features)


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
        if self.history and log_prob - self.history[-1] < -np.sqrt(np.finfo(float).eps):
            _log.warning("Model is not converging.  Current: %s is not greater than %s. "
                         "Delta is %s", log_prob, self.history[-1], log_prob - self.history[-1])
        self.history.append(float(log_prob))

    @property
    def converged(self) -> bool:
        return len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol


class _BaseHMM(BaseEstimator):
    """EM loop, inference methods, persistence; subclasses define the emission family.

    Subclasses declare ``_inits`` (init letter -> attribute, in initialization order) and
    their fitted attributes as :class:`_Fitted` descriptors."""

    _emission = ""
    _letters = "st"
    _inits: ClassVar[dict[str, str]] = {"s": "startprob_", "t": "transmat_"}
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
        "implementation": [StrOptions({"log", "scaling"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [DeviceString()],
    }

    startprob_ = _Fitted(_stochastic("k"))
    transmat_ = _Fitted(_stochastic("k", "k"))

    # --- to implement per family -----------------------------------------------------------
    def _check_X(self, X, *, reset: bool) -> np.ndarray:
        raise NotImplementedError

    def _dims(self) -> dict:
        raise NotImplementedError

    def _model_options(self) -> dict:
        raise NotImplementedError

    def _set_emission(self, model: HMM) -> None:
        raise NotImplementedError

    def _get_emission(self, model: HMM) -> None:
        raise NotImplementedError

    def _init_emission(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        raise NotImplementedError

    # --- plumbing --------------------------------------------------------------------------
    @property
    def _param_names(self) -> tuple[str, ...]:
        return tuple(self._inits.values())

    def _raw(self, name: str) -> np.ndarray:
        """A fitted attribute as stored (covariances in their type-specific layout)."""
        return self.__dict__["_" + name]

    def _is_set(self, name: str) -> bool:
        return "_" + name in self.__dict__

    def _keep(self, args: dict) -> None:
        """Store the constructor's arguments unchanged (scikit-learn's convention)."""
        for name, value in args.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def __sklearn_is_fitted__(self) -> bool:
        return all(self._is_set(name) for name in self._param_names)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # NaN is accepted only as a whole missing row, so the generic NaN checks must not
        # treat it as allowed; counts are non-negative
        tags.input_tags.allow_nan = False
        tags.input_tags.positive_only = self._emission in ("poisson", "multinomial")
        tags.non_deterministic = False
        return tags

    def _check_letters(self) -> None:
        for name in ("params", "init_params"):
            bad = set(getattr(self, name)) - set(self._letters)
            if bad:
                raise ValueError(f"{name}: expected letters from {self._letters!r}, got "
                                 f"{getattr(self, name)!r}")

    def _model(self) -> HMM:
        """An HMM holding this estimator's current parameters, each checked again (arrays can
        change in place) and against each other."""
        check_is_fitted(self)
        for name in self._param_names:
            getattr(type(self), name).check(self, name, self._raw(name))
        model = HMM(self.n_components, self._emission, dtype=self.dtype, **self._dims(),
                    start_pseudocount=float(self.startprob_prior - 1),
                    trans_pseudocount=float(self.transmat_prior - 1),
                    emission_options=self._model_options())
        model.set_probabilities(torch.from_numpy(self.startprob_),
                                torch.from_numpy(self.transmat_))
        self._set_emission(model)
        return model.to(self.device).requires_grad_(False)

    def _store(self, model: HMM) -> None:
        self.startprob_ = _normalized(model.log_startprob)
        self.transmat_ = _normalized(model.log_transmat)
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

    def _needs_init(self, letter: str) -> bool:
        return letter in self.init_params or not self._is_set(self._inits[letter])

    def _log_overwrites(self) -> None:
        """hmmlearn's message for every attribute set by hand that ``init_params`` replaces."""
        for letter, name in self._inits.items():
            if letter in self.init_params and self._is_set(name):
                _log.warning("Even though the %r attribute is set, it will be overwritten "
                             "during initialization because 'init_params' contains %r",
                             name, letter)

    def _init(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        k = self.n_components
        if self._needs_init("s"):
            self.startprob_ = _dirichlet(rng, k, None)
        if self._needs_init("t"):
            self.transmat_ = _dirichlet(rng, k, k)
        self._init_emission(X, rng)

    def _log_too_little_data(self, X: np.ndarray) -> None:
        n_free = self._n_parameters()
        if X.size < n_free:
            _log.warning("Fitting a model with %d free scalar parameters with only %d data "
                         "points will result in a degenerate solution.", n_free, X.size)

    # --- fitting ---------------------------------------------------------------------------
    def fit(self, X, lengths=None):
        """Estimate parameters by EM (``n_init`` restarts, the best log-likelihood kept)."""
        self._validate_params()
        self._check_letters()
        X = self._check_X(X, reset=True)
        x, lens, _ = self._tensors(X, lengths)
        rng = check_random_state(self.random_state)
        self._log_overwrites()
        best = None
        for restart in range(self.n_init):
            self._init(X, rng)
            if restart == 0:
                self._log_too_little_data(X)
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
            self._log_overwrites()
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
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        if currstate is not None:
            check_int(currstate, "currstate", minimum=0, maximum=self.n_components - 1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        gen = torch.Generator(device=self.device).manual_seed(int(rng.randint(2**31 - 1)))
        obs, path = model.sample(n_samples, 1, generator=gen, first_state=currstate)
        obs = obs[0].cpu().numpy()
        return (obs[:, None] if obs.ndim == 1 else obs), path[0].cpu().numpy()

    def get_stationary_distribution(self) -> np.ndarray:
        """The stationary distribution of the states (n_components,): the left eigenvector of
        ``transmat_`` for its largest eigenvalue (1), normalized to sum to 1."""
        check_is_fitted(self, "transmat_")
        trans = type(self).transmat_.check(self, "transmat_", self.transmat_)
        values, vectors = np.linalg.eig(trans.T)
        vector = np.real_if_close(vectors[:, np.argmax(values.real)])
        return vector / vector.sum()

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
        check_is_fitted(self)
        params = {name: value.tolist() if isinstance(value, np.ndarray) else value
                  for name, value in self.get_params().items()}
        if not isinstance(params["random_state"], int | type(None)):
            params["random_state"] = None
        tensors = {name: torch.as_tensor(self._raw(name)) for name in self._param_names}
        return save_checkpoint(path, tensors, kind=f"estimator.{type(self).__name__}",
                               config={"params": params, "n_features_in": getattr(
                                   self, "n_features_in_", None)})

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Rebuild an estimator written by :meth:`save`. Only the constructor's arguments
        (validated) and the fitted attributes (validated on set, then against each other)
        are taken from the file."""
        tensors, config, _ = load_checkpoint(path, kind=f"estimator.{cls.__name__}")
        params, n_in = config.get("params"), config.get("n_features_in")
        if not isinstance(params, dict):
            raise ValueError(f"path: the config's 'params' is not an object: {params!r}")
        check_config(cls, params)
        est = cls(**params)
        est._validate_params()
        if "_covars_" in tensors:  # files written before covars_ was a validated attribute
            tensors["covars_"] = tensors.pop("_covars_")
        names = set(est._param_names)
        if set(tensors) != names:
            raise ValueError(f"path: expected the tensors {sorted(names)}, got "
                             f"{sorted(tensors)}")
        for name in est._param_names:  # in initialization order: shapes depend on earlier ones
            setattr(est, name, tensors[name].numpy())
        if n_in is not None:
            est.n_features_in_ = check_int(n_in, "n_features_in", minimum=1)
        est._model()
        return est


def _normalized(log_probs: torch.Tensor) -> np.ndarray:
    """Probabilities from log-probabilities, rows renormalized in float64."""
    probs = torch.exp(log_probs.detach()).cpu().double().numpy()
    return probs / probs.sum(-1, keepdims=True)


def _check_float_X(est, X, *, reset: bool) -> np.ndarray:
    """Real-valued ``X`` (n_samples, n_features); rows entirely NaN are missing."""
    X = validate_data(est, X, reset=reset, dtype=[np.float64, np.float32],
                      ensure_all_finite="allow-nan")
    if np.isinf(X).any():
        raise ValueError("X: expected finite values (or all-NaN rows for missing), got "
                         "infinite entries")
    nan = np.isnan(X)
    if (nan.any(1) & ~nan.all(1)).any():
        raise ValueError("X: expected no NaN except rows that are entirely NaN (missing "
                         "observations)")
    return X.astype(np.float64)


def _check_counts_X(est, X, *, reset: bool) -> np.ndarray:
    """Counts ``X`` (n_samples, n_features) as floats; rows entirely NaN are missing."""
    X = validate_data(est, X, reset=reset, dtype=[np.float64, np.float32, np.int64, np.int32],
                      ensure_all_finite="allow-nan")
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


def _seen(X: np.ndarray) -> np.ndarray:
    """The rows of ``X`` that are observed; raises if there are none."""
    seen = X[~np.isnan(X).any(1)]
    if len(seen) == 0:
        raise ValueError("X: every observation is missing; nothing to initialize from")
    return seen


class _FeaturesHMM(_BaseHMM):
    """An HMM over feature vectors: ``n_features`` is read from ``_features_from`` (as hmmlearn
    sets it from the parameters)."""

    _features_from = ""

    @property
    def n_features(self) -> int:
        """The dimension of the observations, from the emission parameters."""
        return getattr(self, self._features_from).shape[-1]

    def _dims(self):
        return {"n_features": self.n_features}


class _RealValuedHMM(_FeaturesHMM):
    """Gaussian-family HMMs: real-valued ``X``, ``n_features`` from ``means_``."""

    _features_from = "means_"

    def _check_X(self, X, *, reset):
        return _check_float_X(self, X, reset=reset)

    def _dims(self):
        return {**super()._dims(), "covariance_type": self.covariance_type}


class _EmissionProbabilities:
    """``emissionprob_`` (n_components, n_categories) for the categorical and multinomial
    HMMs; a fresh start draws uniform rows (hmmlearn's)."""

    def _n_categories(self, X) -> int:
        raise NotImplementedError

    def _set_emission(self, model):
        probs = torch.as_tensor(self.emissionprob_)
        with torch.no_grad():
            model.emission.log_emission.copy_(torch.log(probs / probs.sum(-1, keepdim=True)))

    def _get_emission(self, model):
        self.emissionprob_ = _normalized(model.emission.log_emission)

    def _init_emission(self, X, rng):
        if self._needs_init("e"):
            probs = rng.rand(self.n_components, self._n_categories(X))
            self.emissionprob_ = probs / probs.sum(1, keepdims=True)


class CategoricalHMM(_EmissionProbabilities, _BaseHMM):
    """HMM over symbols ``0 .. n_features - 1``; ``X`` is ``(n_samples, 1)`` integers, -1 for
    a missing observation. ``emissionprob_`` is ``(n_components, n_features)``; setting it
    when ``n_features`` is None sets ``n_features`` (as hmmlearn does). A vocabulary inferred
    from data is capped at ``MAX_INFERRED_SYMBOLS``."""

    _emission = "categorical"
    _letters = "ste"
    _inits: ClassVar[dict[str, str]] = {**_BaseHMM._inits, "e": "emissionprob_"}
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "emissionprob_prior": [Interval(Real, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
    }

    def _check_emissionprob(self, name, value):
        arr = _stochastic("k", None)(self, name, value)
        if self.n_features is None:
            self.n_features = arr.shape[1]
        return arr

    emissionprob_ = _Fitted(_check_emissionprob)

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *,
                 emissionprob_prior=1.0, n_features=None, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="ste",
                 init_params="ste", implementation="log", n_init=1, dtype="float64",
                 device="cpu"):
        self._keep(locals())

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
        """Vocabulary size: the parameters' unless they are about to be re-initialized, then
        ``n_features``, else inferred from ``X`` (at most ``MAX_INFERRED_SYMBOLS``)."""
        if self._is_set("emissionprob_") and not fresh:
            return self._raw("emissionprob_").shape[1]
        if self.n_features is not None:
            return self.n_features
        inferred = int(X.max()) + 1 if X is not None else 1
        if inferred > MAX_INFERRED_SYMBOLS:
            raise ValueError(f"X: the largest symbol {inferred - 1} would make a vocabulary "
                             f"of {inferred} symbols, more than the {MAX_INFERRED_SYMBOLS} "
                             "inferred at most; pass n_features=... to use a vocabulary "
                             "that large (or map the symbols to 0 .. V-1)")
        return inferred

    def _dims(self):
        return {"n_symbols": self._n_symbols()}

    def _model_options(self):
        return {"pseudocount": float(self.emissionprob_prior - 1)}

    def _n_categories(self, X) -> int:
        return self._n_symbols(X, fresh=True)


class GaussianHMM(_RealValuedHMM):
    """HMM with Gaussian emissions; rows of ``X`` that are entirely NaN are missing.

    ``covars_`` reads as full matrices ``(n_components, n_features, n_features)`` and is set
    in the type-specific shape, as in hmmlearn: spherical ``(n_components,)``, diag
    ``(n_components, n_features)``, full ``(n_components, n_features, n_features)``, tied
    ``(n_features, n_features)``. Means start from k-means.
    """

    _emission = "gaussian"
    _letters = "stmc"
    _inits: ClassVar[dict[str, str]] = {**_BaseHMM._inits, "m": "means_", "c": "covars_"}
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "means_prior": [Real],
        "means_weight": [Interval(Real, 0, None, closed="left")],
        "covars_prior": [Real],
        "covars_weight": [Real],
    }

    means_ = _Fitted(_real("k", None))
    covars_ = _GaussianCovariances(_covariances({
        "spherical": ("k",), "diag": ("k", None), "full": ("k", None, None),
        "tied": (None, None)}))

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3,
                 startprob_prior=1.0, transmat_prior=1.0, means_prior=0, means_weight=0,
                 covars_prior=1e-2, covars_weight=1, algorithm="viterbi", random_state=None,
                 n_iter=10, tol=1e-2, verbose=False, params="stmc", init_params="stmc",
                 implementation="log", *, n_init=1, dtype="float64", device="cpu"):
        self._keep(locals())

    def _model_options(self):
        return {"means_prior": float(self.means_prior), "means_weight": float(
            self.means_weight), "covars_prior": float(self.covars_prior),
            "covars_weight": float(self.covars_weight), "min_covar": float(self.min_covar)}

    def _set_emission(self, model):
        with torch.no_grad():
            model.emission.means.copy_(torch.as_tensor(self.means_))
        model.emission.set_covariances(torch.as_tensor(self._raw("covars_")))

    def _get_emission(self, model):
        self.means_ = model.emission.means.detach().cpu().double().numpy()
        self.covars_ = model.emission.covariances().detach().cpu().double().numpy()

    def _init_emission(self, X, rng):
        seen = _seen(X)
        k = self.n_components
        if self._needs_init("m"):
            self.means_ = _kmeans(seen, k, rng)
        if self._needs_init("c"):
            cov = _data_covariance(seen, self.min_covar)
            self.covars_ = {"spherical": np.full(k, cov.diagonal().mean()),
                            "diag": np.tile(np.diag(cov), (k, 1)),
                            "full": np.tile(cov, (k, 1, 1)),
                            "tied": cov}[self.covariance_type]


def _kmeans(seen: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """``k`` centres (k, D) of the rows ``seen``: k-means, topped up with random rows when
    there are fewer distinct rows than ``k``."""
    from sklearn.cluster import KMeans

    n_clusters = min(k, len(np.unique(seen, axis=0)))
    centers = KMeans(n_clusters, n_init=1, random_state=rng).fit(seen).cluster_centers_
    return np.concatenate([centers, seen[rng.randint(len(seen), size=k - n_clusters)]])


def _data_covariance(seen: np.ndarray, min_covar: float) -> np.ndarray:
    """The covariance (D, D) of the rows ``seen`` plus ``min_covar`` on the diagonal."""
    d = seen.shape[1]
    cov = np.atleast_2d(np.cov(seen.T)) if len(seen) > 1 else np.zeros((d, d))
    return cov + min_covar * np.eye(d)


class GMMHMM(_RealValuedHMM):
    """HMM whose states emit a mixture of ``n_mix`` Gaussians (hmmlearn's GMMHMM).

    ``weights_`` (n_components, n_mix), ``means_`` (n_components, n_mix, n_features),
    ``covars_`` as in hmmlearn (read as set): spherical (n_components, n_mix), diag
    (n_components, n_mix, n_features), full (n_components, n_mix, n_features, n_features),
    tied (n_components, n_features, n_features) (one matrix per state, shared by its
    mixtures). ``covars_prior``/``covars_weight`` None take hmmlearn's per-type defaults.
    """

    _emission = "gmm"
    _letters = "stmcw"
    _inits: ClassVar[dict[str, str]] = {**_BaseHMM._inits, "w": "weights_", "m": "means_",
                                        "c": "covars_"}
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "n_mix": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "weights_prior": [Real],
        "means_prior": [Real],
        "means_weight": [Interval(Real, 0, None, closed="left")],
        "covars_prior": [Real, None],
        "covars_weight": [Real, None],
    }

    weights_ = _Fitted(_stochastic("k", None))
    means_ = _Fitted(_real("k", None, None))
    covars_ = _Fitted(_covariances({
        "spherical": ("k", None), "diag": ("k", None, None), "full": ("k", None, None, None),
        "tied": ("k", None, None)}))

    def __init__(self, n_components=1, n_mix=1, min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, weights_prior=1.0, means_prior=0.0, means_weight=0.0,
                 covars_prior=None, covars_weight=None, algorithm="viterbi",
                 covariance_type="diag", random_state=None, n_iter=10, tol=1e-2,
                 verbose=False, params="stmcw", init_params="stmcw", implementation="log", *,
                 n_init=1, dtype="float64", device="cpu"):
        self._keep(locals())

    def _covars_priors(self) -> tuple[float, float]:
        """(covars_prior, covars_weight) with hmmlearn's defaults for None."""
        d, m = self.n_features, self.n_mix
        prior, weight = {"full": (0.0, -(1.0 + d + 1.0)), "tied": (0.0, -(m + d + 1.0)),
                         "diag": (-1.5, 0.0), "spherical": (-(m + 2.0) / 2.0, 0.0)
                         }[self.covariance_type]
        return (prior if self.covars_prior is None else float(self.covars_prior),
                weight if self.covars_weight is None else float(self.covars_weight))

    def _model_options(self):
        prior, weight = self._covars_priors()
        return {"n_mix": self.n_mix, "weights_prior": float(self.weights_prior),
                "means_prior": float(self.means_prior),
                "means_weight": float(self.means_weight), "covars_prior": prior,
                "covars_weight": weight, "min_covar": float(self.min_covar)}

    def _set_emission(self, model):
        model.emission.set_parameters(*(torch.as_tensor(self._raw(name))
                                        for name in ("weights_", "means_", "covars_")))

    def _get_emission(self, model):
        emission = model.emission
        self.weights_ = _normalized(emission.log_weights)
        self.means_ = emission.means().detach().cpu().double().numpy()
        self.covars_ = emission.covariances().detach().cpu().double().numpy()

    def _init_emission(self, X, rng):
        seen = _seen(X)
        k, m = self.n_components, self.n_mix
        cov = _data_covariance(seen, self.min_covar)
        if self._needs_init("w"):
            self.weights_ = np.full((k, m), 1.0 / m)
        if self._needs_init("m"):
            self.means_ = self._init_means(seen, rng, cov)
        if self._needs_init("c"):
            self.covars_ = {"spherical": np.full((k, m), cov.diagonal().mean()),
                            "diag": np.tile(np.diag(cov), (k, m, 1)),
                            "full": np.tile(cov, (k, m, 1, 1)),
                            "tied": np.tile(cov, (k, 1, 1))}[self.covariance_type]

    def _init_means(self, seen, rng, cov) -> np.ndarray:
        """k-means over states, then over the mixtures of each state's cluster (draws
        around the overall centre for clusters with fewer rows than ``n_mix``)."""
        from sklearn.cluster import KMeans

        k, m = self.n_components, self.n_mix
        centres = _kmeans(seen, k, rng)
        labels = np.argmin(((seen[:, None] - centres[None]) ** 2).sum(-1), axis=1)
        means = []
        for state in range(k):
            members = seen[labels == state]
            if len(np.unique(members, axis=0)) >= m:
                means.append(KMeans(m, n_init=1, random_state=rng).fit(members)
                             .cluster_centers_)
            else:
                means.append(rng.multivariate_normal(centres.mean(0), cov, size=m))
        return np.stack(means)


class MultinomialHMM(_EmissionProbabilities, _FeaturesHMM):
    """HMM with multinomial emissions over counts (hmmlearn 0.3's MultinomialHMM): each row
    of ``X`` (n_samples, n_features) holds non-negative integer counts whose sum is the number
    of trials. ``n_trials`` None: any totals; an int or an array (n_samples,): the totals are
    checked. Sampling needs one total (``n_trials`` an int or all equal). ``emissionprob_``
    (n_components, n_features); rows entirely NaN are missing."""

    _emission = "multinomial"
    _features_from = "emissionprob_"
    _letters = "ste"
    _inits: ClassVar[dict[str, str]] = {**_BaseHMM._inits, "e": "emissionprob_"}
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "n_trials": [Interval(Integral, 0, None, closed="left"), "array-like", None],
    }

    emissionprob_ = _Fitted(_stochastic("k", None))

    def __init__(self, n_components=1, n_trials=None, startprob_prior=1.0, transmat_prior=1.0,
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False,
                 params="ste", init_params="ste", implementation="log", *, n_init=1,
                 dtype="float64", device="cpu"):
        self._keep(locals())

    def _check_X(self, X, *, reset):
        X = _check_counts_X(self, X, reset=reset)
        if self.n_trials is not None:
            seen = ~np.isnan(X).any(1)
            want = np.broadcast_to(np.asarray(self.n_trials), (X.shape[0],))[seen]
            if not np.array_equal(X[seen].sum(1), want):
                raise ValueError("X: expected every row's counts to sum to n_trials")
        return X

    def _model_options(self):
        trials = np.unique(np.asarray(self.n_trials)) if self.n_trials is not None else []
        return {"n_trials": int(trials[0]) if len(trials) == 1 else None}

    def _n_categories(self, X) -> int:
        return X.shape[1]


class PoissonHMM(_FeaturesHMM):
    """HMM with independent Poisson counts per feature; ``lambdas_`` (n_components,
    n_features); rows of ``X`` that are entirely NaN are missing."""

    _emission = "poisson"
    _features_from = "lambdas_"
    _letters = "stl"
    _inits: ClassVar[dict[str, str]] = {**_BaseHMM._inits, "l": "lambdas_"}
    _parameter_constraints: ClassVar[dict] = {
        **_BaseHMM._parameter_constraints,
        "lambdas_prior": [Interval(Real, 0, None, closed="left")],
        "lambdas_weight": [Interval(Real, 0, None, closed="left")],
    }

    lambdas_ = _Fitted(_real("k", None, low=0.0))

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0,
                 lambdas_prior=0.0, lambdas_weight=0.0, algorithm="viterbi",
                 random_state=None, n_iter=10, tol=1e-2, verbose=False, params="stl",
                 init_params="stl", implementation="log", *, n_init=1, dtype="float64",
                 device="cpu"):
        self._keep(locals())

    def _check_X(self, X, *, reset):
        return _check_counts_X(self, X, reset=reset)

    def _model_options(self):
        return {"lambdas_prior": float(self.lambdas_prior),
                "lambdas_weight": float(self.lambdas_weight)}

    def _set_emission(self, model):
        lambdas = torch.as_tensor(self.lambdas_)
        with torch.no_grad():
            model.emission.log_rate.copy_(
                torch.log(lambdas.clamp_min(torch.finfo(lambdas.dtype).tiny)))

    def _get_emission(self, model):
        self.lambdas_ = torch.exp(model.emission.log_rate).detach().cpu().double().numpy()

    def _init_emission(self, X, rng):
        if self._needs_init("l"):
            seen = _seen(X)
            mean, var = seen.mean(), seen.var()
            shape = (self.n_components, X.shape[1])
            if var > 0 and mean > 0:
                self.lambdas_ = rng.gamma(mean**2 / var, var / mean, size=shape)
            else:
                self.lambdas_ = np.full(shape, mean)

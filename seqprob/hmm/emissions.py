"""Emission families. Each one only turns observations into the ``(B, T, K)`` log-likelihood
table, gathers M-step sufficient statistics from posteriors, maximizes, and samples.

Observations: categorical ``(B, T)`` long token ids, -1 = missing; Gaussian and Gaussian
mixture ``(B, T, D)`` float, a row entirely NaN = missing; Poisson and multinomial
``(B, T, D)`` non-negative counts as floats, a row entirely NaN = missing. Missing
observations contribute log-likelihood 0 (they are marginalized exactly) and no statistics.
Padding uses the same markers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqprob.core.validation import check_choice, check_dtype, check_float, check_int, describe

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")
Stats = dict[str, Tensor]


def _keep_rows(new: Tensor, old: Tensor, has_data: Tensor) -> Tensor:
    """``new`` where a state received data (``has_data`` (K,)), else the previous value."""
    return torch.where(has_data.reshape(-1, *([1] * (new.dim() - 1))), new, old)


def _zero_missing(table: Tensor, observed: Tensor) -> Tensor:
    """``table`` (B, T, K) with rows where ``observed`` (B, T) is False set to 0."""
    return table if bool(observed.all()) else table.masked_fill(~observed[..., None], 0.0)


def _fill_missing(x: Tensor, observed: Tensor) -> Tensor:
    """``x`` (B, T, D) with the NaN of missing rows replaced by 0 (a copy only if needed)."""
    return x if bool(observed.all()) else torch.nan_to_num(x)


def _log_normalize_rows(counts: Tensor, old_log: Tensor) -> Tensor:
    """Log of row-normalized counts (K, N); rows without mass keep ``old_log``."""
    total = counts.sum(-1, keepdim=True)
    new = torch.log(counts) - torch.log(total.clamp_min(torch.finfo(counts.dtype).tiny))
    return _keep_rows(new, old_log, total.squeeze(-1) > 0)


class Emission(nn.Module):
    """Base class: ``n_states`` hidden states; subclasses define the family."""

    letters: str = ""  # hmmlearn ``params`` letters this family updates

    def __init__(self, n_states: int):
        super().__init__()
        self.n_states = check_int(n_states, "n_states", minimum=1)

    def validate(self, x: Tensor) -> Tensor:
        """Check ``x`` (B, T, ...); return it in the computation dtype."""
        raise NotImplementedError

    def observed(self, x: Tensor) -> Tensor:
        """(B, T) bool: True where an observation is present."""
        raise NotImplementedError

    def log_likelihood(self, x: Tensor) -> Tensor:
        """(B, T, K) log p(x_t | z_t = k), 0 where missing."""
        raise NotImplementedError

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        """Sufficient statistics from posteriors ``weights`` (B, T, K) (zero at padding)."""
        raise NotImplementedError

    def maximize(self, stats: Stats, letters: str) -> None:
        """M-step in place for the parameters named by ``letters``."""
        raise NotImplementedError

    def n_parameters(self, letters: str) -> int:
        """Free scalar parameters updated by ``letters`` (for AIC/BIC)."""
        raise NotImplementedError

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        """Observations (N, ...) for hidden states ``states`` (N,)."""
        raise NotImplementedError


class CategoricalEmission(Emission):
    """p(x = v | z = k) = exp(log_emission[k, v]) over ``n_symbols`` symbols."""

    letters = "e"

    def __init__(self, n_states: int, n_symbols: int, *, pseudocount: float = 0.0):
        super().__init__(n_states)
        self.n_symbols = check_int(n_symbols, "n_symbols", minimum=1)
        self.pseudocount = check_float(pseudocount, "pseudocount", low=0.0)
        self.log_emission = nn.Parameter(torch.full((n_states, n_symbols),
                                                    -math.log(n_symbols)))  # (K V)

    def validate(self, x: Tensor) -> Tensor:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"x: expected integer token ids, got {describe(x)}")
        bad = (x < -1) | (x >= self.n_symbols)
        if bool(bad.any()):
            raise ValueError(f"x: expected token ids in [0, {self.n_symbols}) or -1 for "
                             f"missing, got {int(x[bad][0])}")
        return x.long()

    def observed(self, x: Tensor) -> Tensor:
        return x >= 0

    def log_likelihood(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1)
        table = self.log_emission.index_select(1, flat.clamp_min(0)).T     # (B*T K)
        table = table.masked_fill((flat < 0)[:, None], 0.0)
        return table.reshape(*x.shape, self.n_states)

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        flat = x.reshape(-1)
        keep = flat >= 0
        counts = weights.new_zeros(self.n_symbols, self.n_states)           # (V K)
        counts.index_add_(0, flat[keep], weights.reshape(-1, self.n_states)[keep])
        return {"obs": counts.T}                                            # (K V)

    @torch.no_grad()
    def maximize(self, stats: Stats, letters: str) -> None:
        if "e" in letters:
            counts = stats["obs"] + self.pseudocount
            self.log_emission.copy_(_log_normalize_rows(counts, self.log_emission))

    def n_parameters(self, letters: str) -> int:
        return self.n_states * (self.n_symbols - 1) if "e" in letters else 0

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        probs = torch.exp(self.log_emission.detach())[states]               # (N V)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _check_float_obs(x: Tensor, n_features: int) -> Tensor:
    check_dtype(x, "x", (torch.float16, torch.bfloat16, torch.float32, torch.float64))
    if x.shape[-1] != n_features:
        raise ValueError(f"x: expected {n_features} features in the last dimension, got "
                         f"shape {tuple(x.shape)}")
    nan = torch.isnan(x)
    partial = nan.any(-1) & ~nan.all(-1)
    if bool(partial.any()):
        raise ValueError("x: a row is partly NaN; only rows that are entirely NaN (missing "
                         f"observations) can be marginalized ({int(partial.sum())} such rows)")
    if bool(torch.isinf(x).any()):
        raise ValueError("x: expected finite values or NaN rows, got infinite entries")
    return x


def _quadratic_features(flat: Tensor) -> Tensor:
    """[x**2, x, 1] (N, 2D+1) of observations ``flat`` (N, D): one GEMM against it gives the
    diagonal-Gaussian log-likelihood table or all three sufficient statistics."""
    return torch.cat([flat**2, flat, flat.new_ones(flat.shape[0], 1)], dim=1)


class GaussianEmission(Emission):
    """Multivariate normal per state. Covariances are stored as log-variances (``spherical``
    (K,), ``diag`` (K, D)) or lower Cholesky factors (``full`` (K, D, D), ``tied`` (D, D)).

    The M-step is the MAP update of hmmlearn's GaussianHMM with priors ``means_prior``,
    ``means_weight``, ``covars_prior``, ``covars_weight``; ``min_covar`` is added to the
    diagonal when an update is not positive definite.
    """

    letters = "mc"

    def __init__(self, n_states: int, n_features: int, *, covariance_type: str = "diag",
                 means_prior: float = 0.0, means_weight: float = 0.0,
                 covars_prior: float = 1e-2, covars_weight: float = 1.0,
                 min_covar: float = 1e-3):
        super().__init__(n_states)
        self.n_features = d = check_int(n_features, "n_features", minimum=1)
        self.covariance_type = check_choice(covariance_type, "covariance_type",
                                            COVARIANCE_TYPES)
        self.means_prior = check_float(means_prior, "means_prior")
        self.means_weight = check_float(means_weight, "means_weight", low=0.0)
        self.covars_prior = check_float(covars_prior, "covars_prior")
        self.covars_weight = check_float(covars_weight, "covars_weight")
        self.min_covar = check_float(min_covar, "min_covar", low=0.0)
        k = n_states
        self.means = nn.Parameter(torch.zeros(k, d))                        # (K D)
        if covariance_type == "spherical":
            self.log_var = nn.Parameter(torch.zeros(k))                     # (K)
        elif covariance_type == "diag":
            self.log_var = nn.Parameter(torch.zeros(k, d))                  # (K D)
        elif covariance_type == "full":
            self.scale_tril = nn.Parameter(torch.eye(d).repeat(k, 1, 1))   # (K D D)
        else:
            self.scale_tril = nn.Parameter(torch.eye(d))                    # (D D)

    # covariances in hmmlearn's type-specific layout
    def covariances(self) -> Tensor:
        """spherical (K,), diag (K, D), full (K, D, D), tied (D, D)."""
        if self.covariance_type in ("spherical", "diag"):
            return torch.exp(self.log_var)
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    @torch.no_grad()
    def set_covariances(self, covars: Tensor) -> None:
        """Set from hmmlearn's layout; raises if not positive (definite)."""
        covars = covars.to(self.means.dtype)
        if not bool(torch.isfinite(covars).all()):
            raise ValueError("covars: expected finite values, got NaN or infinite entries")
        want = {"spherical": (self.n_states,), "diag": (self.n_states, self.n_features),
                "full": (self.n_states, self.n_features, self.n_features),
                "tied": (self.n_features, self.n_features)}[self.covariance_type]
        if tuple(covars.shape) != want:
            raise ValueError(f"covars: expected shape {want} for covariance_type "
                             f"{self.covariance_type!r}, got {tuple(covars.shape)}")
        if self.covariance_type in ("spherical", "diag"):
            if not bool((covars > 0).all()):
                raise ValueError("covars: expected positive variances")
            self.log_var.copy_(torch.log(covars))
            return
        if not torch.allclose(covars, covars.transpose(-1, -2)):
            raise ValueError("covars: expected symmetric matrices")
        chol, info = torch.linalg.cholesky_ex(covars)
        if bool((info != 0).any()):
            raise ValueError("covars: expected positive-definite matrices")
        self.scale_tril.copy_(chol)

    def validate(self, x: Tensor) -> Tensor:
        return _check_float_obs(x, self.n_features).to(self.means.dtype)

    def observed(self, x: Tensor) -> Tensor:
        return ~torch.isnan(x[..., 0])

    def log_likelihood(self, x: Tensor) -> Tensor:
        obs = self.observed(x)
        flat = _fill_missing(x, obs).reshape(-1, self.n_features)           # (N D)
        const = self.n_features * math.log(2 * math.pi)
        if self.covariance_type in ("spherical", "diag"):
            log_var = self.log_var.expand(self.n_features, -1).T \
                if self.covariance_type == "spherical" else self.log_var   # (K D)
            prec = torch.exp(-log_var)                                      # (K D)
            bias = -0.5 * (const + log_var.sum(-1) + (self.means**2 * prec).sum(-1))  # (K)
            weights = torch.cat([-0.5 * prec, self.means * prec, bias[:, None]], dim=1)
            out = _quadratic_features(flat) @ weights.T                     # (N K)
        else:
            tril = self.scale_tril.expand(self.n_states, -1, -1)            # (K D D)
            diff = flat.T[None] - self.means[:, :, None]                    # (K D N)
            sol = torch.linalg.solve_triangular(tril, diff, upper=False)    # (K D N)
            log_det = 2 * torch.log(torch.diagonal(tril, dim1=-2, dim2=-1)).sum(-1)
            out = -0.5 * (const + log_det[:, None] + (sol**2).sum(1)).T     # (N K)
        return _zero_missing(out.reshape(*x.shape[:-1], self.n_states), obs)

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        obs = self.observed(x)
        w = _zero_missing(weights, obs).reshape(-1, self.n_states)          # (N K)
        flat = _fill_missing(x, obs).reshape(-1, self.n_features)           # (N D)
        if self.covariance_type in ("spherical", "diag"):
            d = self.n_features
            sums = w.T @ _quadratic_features(flat)                          # (K 2D+1)
            return {"post": sums[:, 2 * d], "obs": sums[:, d:2 * d], "obs2": sums[:, :d]}
        return {"post": w.sum(0), "obs": w.T @ flat,
                "outer": torch.einsum("nk,nd,ne->kde", w, flat, flat)}     # (K D D)

    @torch.no_grad()
    def maximize(self, stats: Stats, letters: str) -> None:
        post, obs = stats["post"], stats["obs"]
        has_data = post > 0
        if "m" in letters:
            denom = (self.means_weight + post)[:, None]
            means = (self.means_weight * self.means_prior + obs) / denom.where(denom > 0, 1.0)
            self.means.copy_(_keep_rows(means, self.means, denom[:, 0] > 0))
        if "c" in letters:
            self._maximize_covariances(stats, has_data)

    def _maximize_covariances(self, stats: Stats, has_data: Tensor) -> None:
        post, obs, mu = stats["post"], stats["obs"], self.means
        centred = mu - self.means_prior
        if self.covariance_type in ("spherical", "diag"):
            scatter = (self.means_weight * centred**2 + stats["obs2"] - 2 * mu * obs
                       + mu**2 * post[:, None])                              # (K D)
            denom = (max(self.covars_weight - 1, 0) + post).clamp_min(1e-5)[:, None]
            var = (self.covars_prior + scatter) / denom
            if self.covariance_type == "spherical":
                var = var.mean(-1)
            var = var.clamp_min(torch.finfo(var.dtype).tiny)
            self.log_var.copy_(_keep_rows(torch.log(var), self.log_var, has_data))
            return
        cross = obs[:, :, None] * mu[:, None, :]                            # (K D D)
        scatter = (self.means_weight * centred[:, :, None] * centred[:, None, :]
                   + stats["outer"] - cross - cross.transpose(-1, -2)
                   + mu[:, :, None] * mu[:, None, :] * post[:, None, None])
        extra = max(self.covars_weight - self.n_features, 0)
        if self.covariance_type == "tied":
            total = extra + post.sum()
            if float(total) <= 0:
                return
            cov = (self.covars_prior + scatter.sum(0)) / total
            self.scale_tril.copy_(self._cholesky(cov))
            return
        denom = (extra + post)[:, None, None]
        cov = (self.covars_prior + scatter) / denom.where(denom > 0, 1.0)
        eye = torch.eye(self.n_features, dtype=cov.dtype, device=cov.device)
        cov = torch.where((denom > 0), cov, eye)
        self.scale_tril.copy_(_keep_rows(self._cholesky(cov), self.scale_tril, denom[:, 0, 0] > 0))

    def _cholesky(self, cov: Tensor) -> Tensor:
        cov = 0.5 * (cov + cov.transpose(-1, -2))
        chol, info = torch.linalg.cholesky_ex(cov)
        if bool((info != 0).any()):
            eye = torch.eye(self.n_features, dtype=cov.dtype, device=cov.device)
            chol = torch.linalg.cholesky(cov + max(self.min_covar, 1e-10) * eye)
        return chol

    def n_parameters(self, letters: str) -> int:
        k, d = self.n_states, self.n_features
        count = k * d if "m" in letters else 0
        if "c" in letters:
            count += {"spherical": k, "diag": k * d, "full": k * d * (d + 1) // 2,
                      "tied": d * (d + 1) // 2}[self.covariance_type]
        return count

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        mu = self.means.detach()[states]                                    # (N D)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        if self.covariance_type in ("spherical", "diag"):
            sd = torch.exp(0.5 * self.log_var.detach())
            sd = sd[states] if self.covariance_type == "diag" else sd[states][:, None]
            return mu + sd * noise
        tril = self.scale_tril.detach()
        tril = tril[states] if self.covariance_type == "full" else tril.expand(len(states), -1, -1)
        return mu + (tril @ noise[..., None]).squeeze(-1)


class PoissonEmission(Emission):
    """Independent Poisson counts per feature: rates ``exp(log_rate)`` (K, D).

    The M-step is hmmlearn's PoissonHMM update with ``lambdas_prior`` and ``lambdas_weight``.
    A rate of 0 is kept as log-rate ``log(tiny)`` so that a zero count still has probability 1.
    """

    letters = "l"

    def __init__(self, n_states: int, n_features: int, *, lambdas_prior: float = 0.0,
                 lambdas_weight: float = 0.0):
        super().__init__(n_states)
        self.n_features = check_int(n_features, "n_features", minimum=1)
        self.lambdas_prior = check_float(lambdas_prior, "lambdas_prior", low=0.0)
        self.lambdas_weight = check_float(lambdas_weight, "lambdas_weight", low=0.0)
        self.log_rate = nn.Parameter(torch.zeros(n_states, n_features))    # (K D)

    def validate(self, x: Tensor) -> Tensor:
        return _check_counts(x, self.n_features, self.log_rate.dtype)

    def observed(self, x: Tensor) -> Tensor:
        return ~torch.isnan(x[..., 0])

    def log_likelihood(self, x: Tensor) -> Tensor:
        obs = self.observed(x)
        flat = torch.nan_to_num(x.reshape(-1, self.n_features))             # (N D)
        out = (flat @ self.log_rate.T - torch.exp(self.log_rate).sum(-1)
               - torch.lgamma(flat + 1).sum(-1, keepdim=True))              # (N K)
        return _zero_missing(out.reshape(*x.shape[:-1], self.n_states), obs)

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        w = _zero_missing(weights, self.observed(x)).reshape(-1, self.n_states)
        flat = torch.nan_to_num(x.reshape(-1, self.n_features))
        return {"post": w.sum(0), "obs": w.T @ flat}

    @torch.no_grad()
    def maximize(self, stats: Stats, letters: str) -> None:
        if "l" not in letters:
            return
        post, obs = stats["post"], stats["obs"]
        total = post.sum()
        mean = obs / post.where(post > 0, 1.0)[:, None]
        rate = (self.lambdas_prior + total * mean) / (self.lambdas_weight + total)
        log_rate = torch.log(rate.clamp_min(torch.finfo(rate.dtype).tiny))
        self.log_rate.copy_(_keep_rows(log_rate, self.log_rate, post > 0))

    def n_parameters(self, letters: str) -> int:
        return self.n_states * self.n_features if "l" in letters else 0

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.poisson(torch.exp(self.log_rate.detach())[states], generator=generator)


def _check_counts(x: Tensor, n_features: int, dtype: torch.dtype) -> Tensor:
    """Counts ``x`` (B, T, D): non-negative integers (NaN rows missing), in ``dtype``."""
    x = _check_float_obs(x, n_features) if x.is_floating_point() else x
    x = x.to(dtype)
    seen = x[~torch.isnan(x)]
    if bool((seen < 0).any()) or bool((seen != torch.round(seen)).any()):
        raise ValueError("x: expected non-negative integer counts (or NaN rows for "
                         "missing observations)")
    return x


class MultinomialEmission(Emission):
    """Multinomial counts over ``n_features`` categories with the row's total as the number of
    trials: p(x | z = k) = n! / prod(x_d!) prod(p_kd ** x_d), p = exp(log_emission) (K, D).
    ``n_trials`` (an int, or None) is needed only to sample."""

    letters = "e"

    def __init__(self, n_states: int, n_features: int, *, n_trials: int | None = None):
        super().__init__(n_states)
        self.n_features = check_int(n_features, "n_features", minimum=1)
        self.n_trials = None if n_trials is None else check_int(n_trials, "n_trials", minimum=0)
        self.log_emission = nn.Parameter(torch.full((n_states, n_features),
                                                    -math.log(n_features)))  # (K D)

    def validate(self, x: Tensor) -> Tensor:
        return _check_counts(x, self.n_features, self.log_emission.dtype)

    def observed(self, x: Tensor) -> Tensor:
        return ~torch.isnan(x[..., 0])

    def log_likelihood(self, x: Tensor) -> Tensor:
        obs = self.observed(x)
        flat = torch.nan_to_num(x.reshape(-1, self.n_features))             # (N D)
        zero = torch.isinf(self.log_emission)                              # (K D) p = 0
        # a zero count of a zero-probability category contributes 0 (not 0 * -inf = NaN);
        # any positive count of one makes the row impossible
        log_p = self.log_emission.masked_fill(zero, 0.0)
        out = (flat @ log_p.T + torch.lgamma(flat.sum(-1, keepdim=True) + 1)
               - torch.lgamma(flat + 1).sum(-1, keepdim=True))              # (N K)
        if bool(zero.any()):
            out = out.masked_fill((flat > 0).to(flat.dtype) @ zero.to(flat.dtype).T > 0,
                                  -math.inf)
        return _zero_missing(out.reshape(*x.shape[:-1], self.n_states), obs)

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        w = _zero_missing(weights, self.observed(x)).reshape(-1, self.n_states)
        return {"obs": w.T @ torch.nan_to_num(x.reshape(-1, self.n_features))}  # (K D)

    @torch.no_grad()
    def maximize(self, stats: Stats, letters: str) -> None:
        if "e" in letters:
            self.log_emission.copy_(_log_normalize_rows(stats["obs"], self.log_emission))

    def n_parameters(self, letters: str) -> int:
        return self.n_states * (self.n_features - 1) if "e" in letters else 0

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.n_trials is None:
            raise ValueError("n_trials: sampling needs one number of trials, got None")
        probs = torch.exp(self.log_emission.detach())[states]               # (N D)
        draws = torch.multinomial(probs, self.n_trials, replacement=True, generator=generator) \
            if self.n_trials > 0 else probs.new_zeros(len(states), 0, dtype=torch.long)
        counts = probs.new_zeros(probs.shape)
        return counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=probs.dtype))


class GaussianMixtureEmission(Emission):
    """A mixture of ``n_mix`` Gaussians per state (hmmlearn's GMMHMM): weights
    ``exp(log_weights)`` (K, M), components held by a :class:`GaussianEmission` over the K*M
    (state, mixture) pairs, state-major. ``tied``: one full covariance per state shared by its
    mixtures (hmmlearn's meaning; stored as M equal copies).

    The M-step is hmmlearn 0.3.3's MAP update with scalar priors ``weights_prior``,
    ``means_prior``, ``means_weight``, ``covars_prior``, ``covars_weight`` (already resolved
    from hmmlearn's per-type defaults); like hmmlearn, covariances are scattered around the
    means of the E-step.
    """

    letters = "mcw"

    def __init__(self, n_states: int, n_features: int, *, n_mix: int = 1,
                 covariance_type: str = "diag", weights_prior: float = 1.0,
                 means_prior: float = 0.0, means_weight: float = 0.0,
                 covars_prior: float = 0.0, covars_weight: float = 0.0,
                 min_covar: float = 1e-3):
        super().__init__(n_states)
        self.n_features = check_int(n_features, "n_features", minimum=1)
        self.n_mix = check_int(n_mix, "n_mix", minimum=1)
        self.covariance_type = check_choice(covariance_type, "covariance_type",
                                            COVARIANCE_TYPES)
        self.weights_prior = check_float(weights_prior, "weights_prior")
        self.means_prior = check_float(means_prior, "means_prior")
        self.means_weight = check_float(means_weight, "means_weight", low=0.0)
        self.covars_prior = check_float(covars_prior, "covars_prior")
        self.covars_weight = check_float(covars_weight, "covars_weight")
        inner = "full" if covariance_type == "tied" else covariance_type
        self.components = GaussianEmission(n_states * n_mix, n_features, covariance_type=inner,
                                           min_covar=min_covar)
        self.log_weights = nn.Parameter(torch.full((n_states, n_mix), -math.log(n_mix)))

    # parameters in hmmlearn's layout
    def means(self) -> Tensor:
        """(K, M, D)."""
        return self.components.means.reshape(self.n_states, self.n_mix, self.n_features)

    def covariances(self) -> Tensor:
        """spherical (K, M), diag (K, M, D), full (K, M, D, D), tied (K, D, D)."""
        cov = self.components.covariances()
        cov = cov.reshape(self.n_states, self.n_mix, *cov.shape[1:])
        return cov[:, 0] if self.covariance_type == "tied" else cov

    @torch.no_grad()
    def set_parameters(self, weights: Tensor, means: Tensor, covars: Tensor) -> None:
        """Set weights (K, M), means (K, M, D) and covariances in hmmlearn's layout."""
        k, m, d = self.n_states, self.n_mix, self.n_features
        for name, value, want in (("weights", weights, (k, m)), ("means", means, (k, m, d))):
            if tuple(value.shape) != want:
                raise ValueError(f"{name}: expected shape {want}, got {tuple(value.shape)}")
        self.log_weights.copy_(torch.log(weights))
        self.components.means.copy_(means.reshape(k * m, d))
        if self.covariance_type == "tied":
            if tuple(covars.shape) != (k, d, d):
                raise ValueError(f"covars: expected shape {(k, d, d)} for covariance_type "
                                 f"'tied', got {tuple(covars.shape)}")
            covars = covars[:, None].expand(k, m, d, d)
        elif tuple(covars.shape[:2]) != (k, m):
            raise ValueError(f"covars: expected shape ({k}, {m}, ...) for covariance_type "
                             f"{self.covariance_type!r}, got {tuple(covars.shape)}")
        self.components.set_covariances(covars.reshape(k * m, *covars.shape[2:]))

    def validate(self, x: Tensor) -> Tensor:
        return self.components.validate(x)

    def observed(self, x: Tensor) -> Tensor:
        return self.components.observed(x)

    def _joint(self, x: Tensor) -> Tensor:
        """(B, T, K, M) log w_km + log N(x_t; mu_km, Sigma_km) (log w_km where missing)."""
        table = self.components.log_likelihood(x)
        return table.reshape(*x.shape[:-1], self.n_states, self.n_mix) + self.log_weights

    def log_likelihood(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._joint(x), dim=-1)

    def statistics(self, x: Tensor, weights: Tensor) -> Stats:
        obs = self.observed(x)
        post = _zero_missing(weights, obs).reshape(-1, self.n_states)       # (N K)
        joint = self._joint(x).reshape(post.shape[0], self.n_states, self.n_mix)
        mix = post[..., None] * torch.softmax(joint, dim=-1)                # (N K M)
        flat = _fill_missing(x, obs).reshape(-1, self.n_features)           # (N D)
        stats = {"post": post.sum(0), "post_mix": mix.sum(0),
                 "obs": torch.einsum("nkm,nd->kmd", mix, flat)}
        if self.covariance_type in ("spherical", "diag"):
            stats["obs2"] = torch.einsum("nkm,nd->kmd", mix, flat**2)
        else:
            stats["outer"] = torch.einsum("nkm,nd,ne->kmde", mix, flat, flat)
        return stats

    def _scatter(self, stats: Stats, mu: Tensor) -> Tensor:
        """sum_t r_tkm (x_t - mu_km)(x_t - mu_km)^T, its diagonal (diag) or trace (spherical),
        around ``mu`` (K, M, D)."""
        obs, weight = stats["obs"], stats["post_mix"][..., None]
        if self.covariance_type in ("spherical", "diag"):
            diag = stats["obs2"] - 2 * mu * obs + mu**2 * weight            # (K M D)
            return diag.sum(-1) if self.covariance_type == "spherical" else diag
        cross = obs[..., :, None] * mu[..., None, :]
        return (stats["outer"] - cross - cross.transpose(-1, -2)
                + mu[..., :, None] * mu[..., None, :] * weight[..., None])  # (K M D D)

    @torch.no_grad()
    def maximize(self, stats: Stats, letters: str) -> None:
        post_mix, m = stats["post_mix"], self.n_mix
        has_data = stats["post"] > 0
        weights, means = torch.exp(self.log_weights), self.means()
        scatter = self._scatter(stats, means) if "c" in letters else None  # E-step means
        if "w" in letters:
            alpha = self.weights_prior - 1
            new = (post_mix + alpha) / (stats["post"] + m * alpha)[:, None]
            weights = _keep_rows(new, weights, has_data)
        if "m" in letters:
            denom = (post_mix + self.means_weight)[..., None]
            new = (self.means_weight * self.means_prior + stats["obs"]) / denom.where(
                denom > 0, 1.0)
            means = torch.where(denom > 0, new, means)
        covars = self.covariances()
        if "c" in letters:
            covars = self._usable(self._covariance_update(stats, scatter, means), covars,
                                  post_mix > 0)
        self.set_parameters(weights, means, covars)

    def _usable(self, new: Tensor, old: Tensor, has_data: Tensor) -> Tensor:
        """``new`` covariances made positive (definite): variances floored at ``min_covar``,
        matrices given ``min_covar`` on the diagonal where not positive definite (hmmlearn
        lets both degenerate); components (or, tied, states) without data keep ``old``."""
        if self.covariance_type in ("spherical", "diag"):
            new = new.clamp_min(max(self.components.min_covar, torch.finfo(new.dtype).tiny))
        else:
            tril = self.components._cholesky(new)
            new = tril @ tril.transpose(-1, -2)
        if self.covariance_type == "tied":
            return _keep_rows(new, old, has_data.any(-1))
        return torch.where(has_data.reshape(*has_data.shape, *([1] * (new.dim() - 2))),
                           new, old)

    def _covariance_update(self, stats: Stats, scatter: Tensor, means: Tensor) -> Tensor:
        lam, d, m = self.means_weight, self.n_features, self.n_mix
        prior, weight, post_mix = self.covars_prior, self.covars_weight, stats["post_mix"]
        centred = means - self.means_prior                                  # (K M D)
        if self.covariance_type == "diag":
            return ((lam * centred**2 + 2 * weight + scatter)
                    / (post_mix[..., None] + 1 + 2 * (prior + 1)))
        if self.covariance_type == "spherical":
            return ((lam * (centred**2).sum(-1) + 2 * weight + scatter)
                    / (d * (post_mix + 1) + 2 * (prior + 1)))
        outer = centred[..., :, None] * centred[..., None, :]               # (K M D D)
        if self.covariance_type == "full":
            return ((prior + lam * outer + scatter)
                    / (post_mix + 1 + weight + d + 1)[..., None, None])
        return ((lam * outer).sum(1) + prior + scatter.sum(1)) / (
            stats["post"] + m + weight + d + 1)[:, None, None]

    def n_parameters(self, letters: str) -> int:
        k, m, d = self.n_states, self.n_mix, self.n_features
        count = k * m * d if "m" in letters else 0
        count += k * (m - 1) if "w" in letters else 0
        if "c" in letters:
            count += {"spherical": k * m, "diag": k * m * d, "full": k * m * d * (d + 1) // 2,
                      "tied": k * d * (d + 1) // 2}[self.covariance_type]
        return count

    def sample(self, states: Tensor, generator: torch.Generator | None) -> Tensor:
        mix = torch.multinomial(torch.exp(self.log_weights.detach())[states], 1,
                                generator=generator)[:, 0]
        return self.components.sample(states * self.n_mix + mix, generator)

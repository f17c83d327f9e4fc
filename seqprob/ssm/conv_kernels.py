"""Convolution-kernel modules of the LTI SSM layers: parameters -> convolution kernel
``(H, L)`` and discrete recurrence (unrelated to :mod:`seqprob.kernels`, the compute kernels).

Each kernel module has ``forward(length) -> (H, length)`` real kernel, ``recurrence() ->
(transition, b, c)`` (the discrete system, see :mod:`seqprob.ssm.lti`) and ``max_length``
(``None``: any length). Complex parameters are stored as real and imaginary parts and
positive quantities (step sizes, decay rates) as logs.

- :class:`S4DKernel`: diagonal, ZOH or bilinear, S4D-Lin / S4D-Inv initialization; kernel by a
  Vandermonde product chunked over the length (a real GEMM per chunk).
- :class:`DPLRKernel`: S4's diagonal-plus-low-rank HiPPO-LegS system, bilinear; kernel by the
  Cauchy/Woodbury generating function at the roots of unity, then an inverse FFT.
- :class:`CompanionKernel`: SpaceTime's shift-plus-last-column system; kernel by
  Sherman–Morrison around the shift at the roots of unity, then an inverse FFT, O(d + l).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqprob.core.validation import check_choice, check_float, check_int
from seqprob.kernels.limits import LTI_MAX_STATE
from seqprob.ssm.lti import DenseTransition, DiagonalTransition, chunk_size


def _complex(param: Tensor) -> Tensor:
    """``(..., 2)`` real view -> complex ``(...)``."""
    return torch.view_as_complex(param.contiguous())


def _generator(random_state: int | None) -> torch.Generator:
    gen = torch.Generator()
    if random_state is None:
        gen.seed()
    else:
        gen.manual_seed(int(random_state))
    return gen


def _log_dt(d_model: int, dt_min: float, dt_max: float, gen: torch.Generator) -> Tensor:
    """Step sizes log-uniform in ``[dt_min, dt_max]``: ``(H,)`` logs."""
    check_float(dt_min, "dt_min", low=0, low_open=True)
    check_float(dt_max, "dt_max", low=dt_min)
    u = torch.rand(d_model, generator=gen)
    return u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def _check_state_size(d_state: int, even: bool) -> int:
    check_int(d_state, "d_state", minimum=2 if even else 1, maximum=LTI_MAX_STATE)
    if even and d_state % 2:
        raise ValueError(f"d_state: expected an even size (conjugate pairs), got {d_state}")
    return d_state


class S4DKernel(nn.Module):
    """Diagonal SSM kernel with ``d_state // 2`` complex modes and their conjugates.

    ``K_l = 2 Re(sum_n C_n dB_n dA_n^l)``; ZOH: ``dA = exp(dt A)``, ``dB = (dA - 1) / A B``;
    bilinear: ``dA = (1 + dt A / 2) / (1 - dt A / 2)``, ``dB = dt B / (1 - dt A / 2)``.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, init: str = "inv",
                 discretization: str = "zoh", dt_min: float = 1e-3, dt_max: float = 1e-1,
                 random_state: int | None = None):
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        half = _check_state_size(d_state, even=True) // 2
        self.discretization = check_choice(discretization, "discretization", ("zoh", "bilinear"))
        check_choice(init, "init", ("inv", "lin"))
        gen = _generator(random_state)
        n = torch.arange(half, dtype=torch.float32)
        imag = math.pi * n if init == "lin" else d_state / math.pi * (d_state / (2 * n + 1) - 1)
        self.log_dt = nn.Parameter(_log_dt(d_model, dt_min, dt_max, gen))            # (H)
        self.log_neg_a_real = nn.Parameter(torch.full((d_model, half), math.log(0.5)))
        self.a_imag = nn.Parameter(imag.repeat(d_model, 1))                           # (H N/2)
        self.b = nn.Parameter(torch.stack([torch.ones(d_model, half),
                                           torch.zeros(d_model, half)], -1))         # (H N/2 2)
        self.c = nn.Parameter(torch.randn(d_model, half, 2, generator=gen) * math.sqrt(0.5))
        self.max_length: int | None = None
        self.state_size, self.state_dtype = half, torch.complex64

    def discrete(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(log dA, dB, 2C)``, each complex ``(H, N/2)``."""
        a = torch.complex(-torch.exp(self.log_neg_a_real), self.a_imag)                # (H N/2)
        dt_a = torch.exp(self.log_dt)[:, None] * a
        b = _complex(self.b)
        if self.discretization == "zoh":
            log_da = dt_a
            db = torch.expm1(dt_a) / a * b
        else:
            log_da = torch.log((1 + dt_a / 2) / (1 - dt_a / 2))
            db = torch.exp(self.log_dt)[:, None] * b / (1 - dt_a / 2)
        return log_da, db, 2 * _complex(self.c)

    def recurrence(self) -> tuple[DiagonalTransition, Tensor, Tensor]:
        log_da, db, c = self.discrete()
        return DiagonalTransition(log_da), db, c

    def forward(self, length: int) -> Tensor:
        """The kernel ``(H, length)``: ``K[i c + j] = Re(W[i] . V[j])`` chunk by chunk, where
        ``W[i] = C dB dA^{c i}`` and ``V[j] = dA^j``, as one real batched GEMM."""
        log_da, db, c = self.discrete()
        heads, half = log_da.shape
        size = min(length, max(1, math.isqrt(length)), chunk_size(length, heads * half))
        blocks = -(-length // size)
        j = torch.arange(size, dtype=log_da.real.dtype, device=log_da.device)
        i = torch.arange(blocks, dtype=log_da.real.dtype, device=log_da.device) * size
        v = torch.exp(log_da[:, :, None] * j)                                       # (H N/2 c)
        w = (c * db)[:, None, :] * torch.exp(i[None, :, None] * log_da[:, None, :])  # (H m N/2)
        k = torch.cat([w.real, -w.imag], -1) @ torch.cat([v.real, v.imag], 1)      # (H m c)
        return k.flatten(1)[:, :length]


def hippo_legs_nplr(d_state: int) -> tuple[Tensor, Tensor, Tensor]:
    """HiPPO-LegS as normal plus low rank, ``A = V (Lambda - P P^*) V^*``, keeping one of each
    conjugate pair: ``(Lambda, P, B)`` complex ``(d_state // 2,)`` in the eigenbasis."""
    n = torch.arange(d_state, dtype=torch.float64)
    root = torch.sqrt(2 * n + 1)
    skew = 0.5 * root[:, None] * root[None, :] * torch.sign(n[None, :] - n[:, None])  # (N N)
    w, v = torch.linalg.eigh(1j * skew.to(torch.complex128))   # skew = -i V diag(w) V^*
    lam = -0.5 - 1j * w
    p = v.mH @ torch.sqrt(n + 0.5).to(torch.complex128)
    b = v.mH @ root.to(torch.complex128)
    keep = torch.argsort(w)[: d_state // 2]                    # Im(Lambda) > 0
    return lam[keep], p[keep], b[keep]


def _conj_pairs(x: Tensor) -> Tensor:
    """``(..., N/2)`` complex -> ``(..., N)``: the kept half and its conjugates."""
    return torch.cat([x, x.conj()], dim=-1)


class DPLRKernel(nn.Module):
    """S4's kernel: ``A = Lambda - P P^*`` (HiPPO-LegS), bilinear, for lengths ``<= l_max``.

    The parameter is ``C~ = C (I - dA^L)`` (``L = l_max``), so that the truncated generating
    function at the L-th roots of unity ``z`` is ``C~ (I - z dA)^{-1} dB``
    ``= C~ [(1 - z)/dt - (1 + z)/2 A]^{-1} B`` — a Cauchy sum after Woodbury; ``recurrence``
    undoes the folding, ``C = C~ (I - dA^L)^{-1}``, explicitly.
    """

    def __init__(self, d_model: int, d_state: int = 64, *, l_max: int = 1024,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, random_state: int | None = None):
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        _check_state_size(d_state, even=True)
        self.max_length = check_int(l_max, "l_max", minimum=1)
        gen = _generator(random_state)
        lam, p, b = hippo_legs_nplr(d_state)
        rep = lambda z: torch.view_as_real(z.to(torch.complex64)).repeat(d_model, 1, 1)  # noqa: E731
        half = d_state // 2
        self.log_dt = nn.Parameter(_log_dt(d_model, dt_min, dt_max, gen))            # (H)
        self.log_neg_lambda_real = nn.Parameter(torch.log(-lam.real).float().repeat(d_model, 1))
        self.lambda_imag = nn.Parameter(lam.imag.float().repeat(d_model, 1))         # (H N/2)
        self.p = nn.Parameter(rep(p))                                                 # (H N/2 2)
        self.b = nn.Parameter(rep(b))
        self.c_tilde = nn.Parameter(torch.randn(d_model, half, 2, generator=gen) * math.sqrt(0.5))
        self.state_size, self.state_dtype = d_state, torch.complex64

    def _full(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(Lambda, P, B, C~)`` complex ``(H, N)`` with conjugate pairs, and ``dt`` ``(H,)``."""
        lam = torch.complex(-torch.exp(self.log_neg_lambda_real), self.lambda_imag)
        parts = [_conj_pairs(x) for x in (lam, _complex(self.p), _complex(self.b),
                                          _complex(self.c_tilde))]
        return (*parts, torch.exp(self.log_dt))

    def forward(self, length: int) -> Tensor:
        """The kernel ``(H, length)``, ``length <= l_max``: Cauchy sums over the frequencies
        of an ``l_max``-point real FFT, chunked, then ``irfft``."""
        lam, p, b, ct, dt = self._full()
        heads, n = lam.shape
        freqs = self.max_length // 2 + 1
        size = chunk_size(freqs, 4 * heads * n)
        out = []
        for start in range(0, freqs, size):
            k = torch.arange(start, min(freqs, start + size), device=lam.device,
                             dtype=dt.dtype)
            z = torch.exp(-2j * math.pi * k / self.max_length)                      # (F)
            alpha = (1 - z)[None] / dt[:, None]                                     # (H F)
            beta = (1 + z) / 2                                                      # (F)
            inv = 1 / (alpha[:, None, :] - beta * lam[:, :, None])                 # (H N F)
            num = torch.stack([ct * b, ct * p, p.conj() * b, p.conj() * p], 1)     # (H 4 N)
            r = num @ inv                                                           # (H 4 F)
            out.append(r[:, 0] - beta * r[:, 1] * r[:, 2] / (1 + beta * r[:, 3]))   # (H F)
        return torch.fft.irfft(torch.cat(out, -1), n=self.max_length)[:, :length]

    def dense(self) -> tuple[Tensor, Tensor, Tensor]:
        """The bilinear discrete system as dense matrices: ``dA`` ``(H, N, N)``, ``dB``
        ``(H, N)`` and the folded ``C~`` ``(H, N)``."""
        lam, p, b, ct, dt = self._full()
        a = torch.diag_embed(lam) - p[:, :, None] * p.conj()[:, None, :]           # (H N N)
        eye = torch.eye(lam.shape[-1], dtype=a.dtype, device=a.device)
        half_step = (dt[:, None, None] / 2) * a
        back = eye - half_step
        da = torch.linalg.solve(back, eye + half_step)
        db = torch.linalg.solve(back, dt[:, None].to(b.dtype) * b)
        return da, db, ct

    def recurrence(self) -> tuple[DenseTransition, Tensor, Tensor]:
        da, db, ct = self.dense()
        eye = torch.eye(da.shape[-1], dtype=da.dtype, device=da.device)
        fold = eye - torch.linalg.matrix_power(da, self.max_length)                # (H N N)
        c = torch.linalg.solve(fold.mT, ct[..., None])[..., 0]  # C (I - dA^L) = C~, undone
        return DenseTransition(da), db, c


def companion_matrix(a: Tensor) -> Tensor:
    """Shift (ones below the diagonal) with last column ``a``: ``(H, d)`` -> ``(H, d, d)``."""
    d = a.shape[-1]
    shift = torch.diag(torch.ones(d - 1, dtype=a.dtype, device=a.device), -1)
    return torch.cat([shift[:, :-1].expand(*a.shape[:-1], d, d - 1), a[..., None]], -1)


def _poly_at_roots(coef: Tensor, n: int) -> Tensor:
    """``sum_k coef_k z^k`` at ``z = exp(-2 pi i j / n)``, ``j <= n/2``; folds degrees >= n."""
    pad = (-coef.shape[-1]) % n
    folded = torch.nn.functional.pad(coef, (0, pad)).unflatten(-1, (-1, n)).sum(-2)
    return torch.fft.rfft(folded, n=n)


def _correlate(u: Tensor, v: Tensor) -> Tensor:
    """``r_k = sum_j u_{j+k} v_j`` for ``k < d`` (FFT): ``(..., d)`` x ``(..., d)``."""
    d = u.shape[-1]
    n = 2 * d
    full = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(v.flip(-1), n=n), n=n)
    return full[..., d - 1: 2 * d - 1]


def companion_kernel(a: Tensor, b: Tensor, c_tilde: Tensor, length: int) -> Tensor:
    """Kernel of the companion SSM, ``(..., H, length)``, by the O(d + l) algorithm.

    With ``A = S + a e_d^T`` (``S`` the shift), ``M = I - z S`` has the nilpotent inverse
    ``sum_k z^k S^k``, so ``u^T M^{-1} v`` is the polynomial with coefficients
    ``corr(u, v)``; Sherman–Morrison gives ``C~ (I - z A)^{-1} B = C~M^{-1}B +
    z (C~M^{-1}a)(e_d^T M^{-1}B) / (1 - z e_d^T M^{-1} a)``, evaluated at the ``length``-th
    roots of unity by FFT and inverted by ``irfft``. ``a, b`` ``(H, d)``; ``c_tilde``
    ``(..., H, d)`` (the folded ``C (I - A^length)``).
    """
    k = torch.arange(length // 2 + 1, device=a.device, dtype=a.dtype)
    z = torch.exp(-2j * math.pi * k / length)
    cb = _poly_at_roots(_correlate(c_tilde, b), length)
    ca = _poly_at_roots(_correlate(c_tilde, a), length)
    eb = _poly_at_roots(b.flip(-1), length)
    ea = _poly_at_roots(a.flip(-1), length)
    transfer = cb + z * ca * eb / (1 - z * ea)                                      # (.. H F)
    return torch.fft.irfft(transfer, n=length)


def companion_last_column(a_raw: Tensor, l_max: int) -> Tensor:
    """The last column of SpaceTime's companion ``A`` from its raw parameter ``(..., d)``.

    As the reference normalizes it, ``a_raw / ||a_raw||_1`` (``||.||_1`` clamped at 1e-4):
    every eigenvalue of the companion matrix then lies in the closed unit disk. Unit-modulus
    eigenvalues (any ``a`` of one sign has the eigenvalue 1) make ``I - A^l_max`` singular,
    so ``A`` is also scaled by ``rho = 2^(-1 / l_max)``: ``rho A`` is similar (by ``T =
    diag(rho^i)``) to the companion matrix with last column ``a_i rho^(d - i)``, which this
    returns — every eigenvalue of ``A^l_max`` then has modulus ``<= 1/2``.
    """
    d = a_raw.shape[-1]
    rho = 0.5 ** (1.0 / l_max)
    powers = rho ** torch.arange(d, 0, -1, dtype=a_raw.dtype, device=a_raw.device)  # (d)
    return a_raw / a_raw.abs().sum(-1, keepdim=True).clamp_min(1e-4) * powers


def l1_normalized(x: Tensor) -> Tensor:
    """``x / ||x||_1`` over the last axis (clamped at 1e-4): the reference's ``norm_order=1``
    for the closed-loop ``B``, ``C`` and ``K``."""
    return x / x.abs().sum(-1, keepdim=True).clamp_min(1e-4)


def companion_fold(a: Tensor, l_max: int) -> Tensor:
    """``I - A^l_max`` for the companion matrices of ``a`` ``(H, d)``: ``(H, d, d)``."""
    mat = companion_matrix(a)
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)
    return eye - torch.linalg.matrix_power(mat, l_max)


class CompanionKernel(nn.Module):
    """SpaceTime's companion SSM kernel for lengths ``<= l_max``: ``d_model / n_heads``
    kernels, each shared by ``n_heads`` consecutive channels (the reference's heads).

    Parameters per kernel: ``a_raw`` (the last column before :func:`companion_last_column`),
    ``b`` and the folded ``C~ = C (I - A^l_max)``, each ``(d_model / n_heads, d)``. With
    ``taps`` ``(d_model, d)`` it is a fixed FIR filter (``a = 0``, ``b = e_1``, ``C =
    taps``; buffers): the preprocessing SSMs (differencing, moving-average residuals)."""

    def __init__(self, d_model: int, d_state: int = 64, *, l_max: int = 1024, n_heads: int = 1,
                 taps: Tensor | None = None, random_state: int | None = None):
        super().__init__()
        check_int(d_model, "d_model", minimum=1)
        _check_state_size(d_state, even=False)
        self.max_length = check_int(l_max, "l_max", minimum=1)
        self.n_heads = check_int(n_heads, "n_heads", minimum=1)
        if d_model % n_heads:
            raise ValueError(f"n_heads: expected a divisor of d_model={d_model} (channels "
                             f"sharing one kernel), got {n_heads}")
        self.state_size, self.state_dtype = d_state, torch.float32
        self.fixed = taps is not None
        if taps is not None:
            if taps.shape != (d_model, d_state) or n_heads != 1:
                raise ValueError(f"taps: expected shape ({d_model}, {d_state}) with n_heads=1, "
                                 f"got {tuple(taps.shape)} with n_heads={n_heads}")
            self.register_buffer("a_raw", torch.zeros(d_model, d_state))
            self.register_buffer("b", torch.eye(d_state)[0].repeat(d_model, 1))
            self.register_buffer("c_tilde", taps.float().clone())  # A^d = 0: C~ = C = taps
            return
        gen = _generator(random_state)
        n = d_model // n_heads
        self.a_raw = nn.Parameter(torch.randn(n, d_state, generator=gen) / d_state)
        self.b = nn.Parameter(torch.randn(n, d_state, generator=gen) / math.sqrt(d_state))
        self.c_tilde = nn.Parameter(torch.randn(n, d_state, generator=gen) / math.sqrt(d_state))

    @property
    def a(self) -> Tensor:
        """The last column of ``A``, ``(d_model / n_heads, d)``; see
        :func:`companion_last_column`."""
        return companion_last_column(self.a_raw, self.max_length)

    def _channels(self, x: Tensor, dim: int = 0) -> Tensor:
        """Per-kernel ``x`` -> per-channel (each kernel repeated ``n_heads`` times)."""
        return x if self.n_heads == 1 else x.repeat_interleave(self.n_heads, dim)

    def forward(self, length: int) -> Tensor:
        """The kernel ``(d_model, length)``: for fixed taps the taps themselves (padded or
        cut), else the O(d + l) algorithm over ``l_max`` points."""
        if self.fixed:
            width = self.c_tilde.shape[-1]
            return torch.nn.functional.pad(self.c_tilde, (0, max(0, length - width)))[
                :, :length]
        kernel = companion_kernel(self.a, self.b, self.c_tilde, self.max_length)
        return self._channels(kernel[..., :length])

    def fold(self) -> Tensor:
        """``I - A^l_max``, ``(d_model / n_heads, d, d)``."""
        return companion_fold(self.a, self.max_length)

    def unfold(self, c_tilde: Tensor, fold: Tensor | None = None) -> Tensor:
        """``C = C~ (I - A^l_max)^{-1}`` for ``c_tilde`` ``(..., H, d)`` (``fold``: a
        precomputed :meth:`fold`)."""
        if self.fixed:
            return c_tilde
        fold = self.fold() if fold is None else fold
        return torch.linalg.solve(fold.mT, c_tilde[..., None])[..., 0]

    def krylov(self, length: int, fold: Tensor | None = None) -> Tensor:
        """``(A^l b)_i`` for ``l < length <= l_max``, ``(d, H, length)`` per kernel: the
        kernels of the outputs ``C = e_i`` (folded ``C~ = e_i (I - A^l_max)``, the rows of
        :meth:`fold`)."""
        fold = self.fold() if fold is None else fold
        rows = fold.transpose(0, 1)                                                 # (d H d)
        return companion_kernel(self.a, self.b, rows, self.max_length)[..., :length]

    def recurrence(self) -> tuple[DenseTransition, Tensor, Tensor]:
        """The per-channel system ``(A (d_model, d, d), b, C)``."""
        trans = DenseTransition(self._channels(companion_matrix(self.a)))
        return trans, self._channels(self.b), self._channels(self.unfold(self.c_tilde))

"""SSM kernels against outside oracles: naive Vandermonde sums, closed forms, dense powers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.ssm import lti
from seqprob.ssm.conv_kernels import (
    CompanionKernel,
    DPLRKernel,
    S4DKernel,
    companion_matrix,
    hippo_legs_nplr,
)
from seqprob.ssm.lti import DenseTransition, final_state, impulse_response, state_response

torch.set_default_dtype(torch.float32)


def _naive_s4d(kernel: S4DKernel, length: int) -> torch.Tensor:
    """Materialize the (H, N, L) Vandermonde matrix with powers (not exponentials)."""
    log_da, db, c = kernel.discrete()
    da = torch.exp(log_da.to(torch.complex128))
    powers = da[..., None] ** torch.arange(length, dtype=torch.float64)          # (H N L)
    return torch.einsum("hn,hnl->hl", (c * db).to(torch.complex128), powers).real.float()


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("init", ["inv", "lin"])
@torch.no_grad()
def test_s4d_kernel_equals_naive_vandermonde_and_closed_form(discretization, init):
    kern = S4DKernel(3, 16, init=init, discretization=discretization, random_state=0)
    length = 50
    got = kern(length)
    torch.testing.assert_close(got, _naive_s4d(kern, length), rtol=1e-4, atol=1e-5)
    # Closed form of the DFT: sum_n (c dB)/2 (1 - dA^L) / (1 - dA w) + conjugate term.
    log_da, db, c = kern.discrete()
    da, cb = torch.exp(log_da.cdouble()), (c * db).cdouble()
    w = torch.exp(-2j * math.pi * torch.arange(length, dtype=torch.float64) / length)
    half = lambda a, g: (g[..., None] / 2 * (1 - a[..., None] ** length)  # noqa: E731
                         / (1 - a[..., None] * w)).sum(1)
    closed = half(da, cb) + half(da.conj(), cb.conj())                          # (H L)
    torch.testing.assert_close(torch.fft.fft(got.double()), closed, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_s4d_closed_form_zoh_matches_discretization():
    """ZOH: dA = exp(dt A), dB = (exp(dt A) - 1) / A B, from the continuous parameters."""
    kern = S4DKernel(2, 4, random_state=1)
    log_da, db, _ = kern.discrete()
    a = torch.complex(-torch.exp(kern.log_neg_a_real), kern.a_imag)
    dt = torch.exp(kern.log_dt)[:, None]
    b = torch.view_as_complex(kern.b)
    torch.testing.assert_close(torch.exp(log_da), torch.linalg.matrix_exp(
        (dt * a)[..., None, None])[..., 0, 0])
    torch.testing.assert_close(db, (torch.exp(dt * a) - 1) / a * b)


@torch.no_grad()
def test_s4d_kernel_chunks_do_not_change_it(monkeypatch):
    kern = S4DKernel(2, 8, random_state=0)
    whole = kern(300)
    monkeypatch.setattr(lti, "ELEMENT_BUDGET", 16)
    torch.testing.assert_close(kern(300), whole, rtol=1e-5, atol=1e-6)


def test_hippo_nplr_reconstructs_legs():
    n = 8
    lam, p, b = hippo_legs_nplr(n)
    full_lam, full_p = torch.cat([lam, lam.conj()]), torch.cat([p, p.conj()])
    a_eig = torch.diag(full_lam) - full_p[:, None] * full_p.conj()[None, :]
    k = torch.arange(n, dtype=torch.float64)
    legs = -torch.sqrt((2 * k[:, None] + 1) * (2 * k[None, :] + 1))
    legs = torch.where(k[:, None] > k[None, :], legs, torch.zeros(()))
    legs = legs - torch.diag(k + 1)
    # Similar matrices: same spectrum.
    want = torch.sort(torch.linalg.eigvals(legs).imag).values
    got = torch.sort(torch.linalg.eigvals(a_eig).imag).values
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.linalg.eigvals(a_eig).real.sum(), torch.trace(legs))
    # The basis change is unitary: B keeps its norm, sum (2n + 1) = N^2.
    torch.testing.assert_close(2 * b.abs().square().sum(), torch.tensor(n * n, dtype=torch.float64))


@pytest.mark.parametrize("l_max,length", [(32, 32), (31, 20), (64, 64)])
@torch.no_grad()
def test_dplr_kernel_equals_dense_matrix_kernel(l_max, length):
    """Cauchy/Woodbury generating function == C dA^l dB with dA = (I - dt/2 A)^-1 (I + dt/2 A)
    built densely and C = C~ (I - dA^L)^-1."""
    kern = DPLRKernel(3, 8, l_max=l_max, dt_min=0.01, dt_max=0.2, random_state=0).double()
    da, db, ct = kern.dense()
    c = torch.linalg.solve((torch.eye(8, dtype=da.dtype) - torch.linalg.matrix_power(da, l_max)).mT,
                           ct[..., None])[..., 0]
    powers = [db]
    for _ in range(length - 1):
        powers.append((da @ powers[-1][..., None])[..., 0])
    dense = torch.einsum("hn,lhn->hl", c, torch.stack(powers)).real
    torch.testing.assert_close(kern(length), dense, rtol=1e-8, atol=1e-9)


@given(d=st.integers(1, 9), length=st.integers(1, 40), seed=st.integers(0, 100))
@settings(max_examples=10, deadline=None)
@torch.no_grad()
def test_companion_fast_kernel_equals_dense_krylov(d, length, seed):
    kern = CompanionKernel(2, d, l_max=length, random_state=seed).double()
    with torch.no_grad():
        kern.a_raw.mul_(3)  # a larger last column than the init
    a = companion_matrix(kern.a)
    c = kern.unfold(kern.c_tilde)
    dense = impulse_response(DenseTransition(a), kern.b, c, length)
    torch.testing.assert_close(kern(length), dense, rtol=1e-7, atol=1e-9)


def test_companion_matrix_is_shift_plus_last_column():
    a = torch.tensor([[0.1, 0.2, 0.3]])
    want = torch.tensor([[[0, 0, 0.1], [1, 0, 0.2], [0, 1, 0.3]]])
    torch.testing.assert_close(companion_matrix(a), want)


@torch.no_grad()
def test_chunked_state_and_response_equal_step_loop(monkeypatch):
    monkeypatch.setattr(lti, "ELEMENT_BUDGET", 12)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 3, generator=gen) * 0.4
    trans, b, c = DenseTransition(a), torch.randn(2, 3, generator=gen), torch.randn(2, 3, generator=gen)
    u, x0 = torch.randn(2, 2, 13, generator=gen), torch.randn(2, 2, 3, generator=gen)
    x, ys = x0, []
    for t in range(13):
        y_t, x = lti.recurrence_step(trans, b, c, x, u[..., t])
        ys.append(y_t)
    conv = lti.fft_conv(u, impulse_response(trans, b, c, 13))
    torch.testing.assert_close(final_state(trans, b, u, x0), x)
    torch.testing.assert_close(conv + state_response(trans, c, x0, 13), torch.stack(ys, -1))


@given(d=st.integers(1, 7), l_max=st.integers(1, 30), cut=st.integers(0, 29),
       seed=st.integers(0, 100))
@settings(max_examples=10, deadline=None)
@torch.no_grad()
def test_companion_krylov_equals_dense_powers(d, l_max, cut, seed):
    length = max(1, l_max - cut)
    kern = CompanionKernel(3, d, l_max=l_max, random_state=seed).double()
    want = DenseTransition(companion_matrix(kern.a)).krylov(kern.b, length)       # (H d L)
    torch.testing.assert_close(kern.krylov(length), want.transpose(0, 1), rtol=1e-7,
                               atol=1e-9)


@given(length=st.integers(1, 20), k_len=st.integers(1, 20), seed=st.integers(0, 100))
@settings(max_examples=10, deadline=None)
def test_fft_conv_and_its_gradients_equal_the_direct_sum(length, k_len, seed):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(3, 1, 2, length, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 2, k_len, generator=gen, dtype=torch.float64, requires_grad=True)
    direct = torch.stack([sum(k[..., s] * u[..., t - s] for s in range(min(t + 1, k_len)))
                          for t in range(length)], -1)                           # (3 4 2 L)
    y = lti.fft_conv(u, k)
    torch.testing.assert_close(y, direct)
    w = torch.randn(direct.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((y * w).sum(), (u, k))
    want = torch.autograd.grad((direct * w).sum(), (u, k))
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got, ref)


@given(length=st.integers(0, 20), width=st.integers(1, 8), seed=st.integers(0, 100))
@settings(max_examples=10, deadline=None)
def test_fir_conv_and_its_gradient_equal_the_direct_sum(length, width, seed):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(3, 2, length, generator=gen, dtype=torch.float64, requires_grad=True)
    taps = torch.randn(2, width, generator=gen, dtype=torch.float64)
    direct = torch.stack([sum(taps[:, s] * u[..., t - s] for s in range(min(t + 1, width)))
                          for t in range(length)], -1) if length else u * 0         # (3 2 L)
    y = lti.fir_conv(u, taps)
    torch.testing.assert_close(y, direct)
    if length:
        w = torch.randn(direct.shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(torch.autograd.grad((y * w).sum(), u)[0],
                                   torch.autograd.grad((direct * w).sum(), u)[0])


@pytest.mark.parametrize("n", [1, 2, 7, 338, 671, 672, 1000])
def test_fft_size_is_an_even_5_smooth_length_at_least_n(n):
    size = lti.fft_size(n)
    rest = size // 2
    for p in (2, 3, 5):
        while rest % p == 0:
            rest //= p
    assert size >= n and size % 2 == 0 and rest == 1
    assert all(lti.fft_size(m) == size for m in range(n, size + 1))  # the next one up

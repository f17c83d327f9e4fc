"""selective_state_update_triton against a plain torch step (the oracle written here) and
against the sequential selective scan reference run one step at a time.

Without a GPU, Triton runs in its CPU interpreter (TRITON_INTERPRET=1, set in conftest.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from seqprob.kernels.reference import selective_scan_ref
from seqprob.kernels.triton_step import selective_state_update_triton

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def torch_step(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """The step written out in torch (fp64 arithmetic): returns (new state, out)."""
    s, x, dt, A, B, C = (t.double() for t in (state, x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.double()
    if dt_softplus:
        dt = F.softplus(dt)
    s = torch.exp(dt[..., None] * A) * s + (dt * x)[..., None] * B[:, None, :]  # (b d n)
    out = (s * C[:, None, :]).sum(-1)                                             # (b d)
    if D is not None:
        out = out + D.double() * x
    if z is not None:
        out = out * F.silu(z.double())
    return s, out


def make_step(batch=3, dim=5, nstate=4, *, dtype=torch.float32, seed=0, D=True, z=True,
              bias=True, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).to(device)
    kw = dict(x=rand(batch, dim), dt=rand(batch, dim) * 0.5,
              A=(-torch.rand(dim, nstate, generator=g) - 0.1).to(device),
              B=rand(batch, nstate), C=rand(batch, nstate),
              D=rand(dim) if D else None, z=rand(batch, dim) if z else None,
              dt_bias=rand(dim) if bias else None)
    return rand(batch, dim, nstate), kw


@pytest.mark.parametrize(("D", "z", "bias", "softplus"), [
    (True, True, True, True), (False, False, False, False), (True, False, True, False),
    (False, True, False, True)])
def test_step_matches_torch(D, z, bias, softplus):
    state, kw = make_step(D=D, z=z, bias=bias)
    if not softplus:
        kw["dt"] = kw["dt"].abs() + 0.05
    want_state, want = torch_step(state, **kw, dt_softplus=softplus)
    out = selective_state_update_triton(state, **kw, dt_softplus=softplus)
    assert out.shape == kw["x"].shape and out.dtype == kw["x"].dtype
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.double(), want_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dim", "nstate"), [(1, 1), (7, 3), (40, 16), (3, 33)])
def test_step_odd_sizes_and_blocks(dim, nstate):
    """Dims beyond one channel block, N not a power of two, N above 32."""
    state, kw = make_step(batch=2, dim=dim, nstate=nstate)
    want_state, want = torch_step(state, **kw, dt_softplus=True)
    out = selective_state_update_triton(state, **kw, dt_softplus=True)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.double(), want_state, rtol=1e-5, atol=1e-5)


def test_step_strided_state_updated_in_place():
    """A state that is a view (N not innermost) is written through its strides."""
    store, kw = make_step(batch=2, dim=6, nstate=4)
    store = store.transpose(1, 2).contiguous()                                   # (b n d)
    state = store.transpose(1, 2)                                                # (b d n) view
    want_state, want = torch_step(state, **kw, dt_softplus=True)
    out = selective_state_update_triton(state, **kw, dt_softplus=True)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(store.transpose(1, 2).double(), want_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float16, 3e-3),
                                            (torch.bfloat16, 3e-2)])
def test_step_dtypes(dtype, tol):
    """fp64 computes in fp64; half states and inputs compute in fp32 and store in their dtype."""
    state, kw = make_step(dtype=dtype)
    want_state, want = torch_step(state, **kw, dt_softplus=True)
    out = selective_state_update_triton(state, **kw, dt_softplus=True)
    assert out.dtype == dtype and state.dtype == dtype
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
    torch.testing.assert_close(state.double(), want_state, rtol=tol, atol=tol)


def test_steps_reproduce_the_scan():
    """Stepping token by token gives the sequential reference scan's outputs and last state."""
    batch, dim, nstate, length = 2, 4, 3, 6
    g = torch.Generator().manual_seed(1)
    u, delta, z = (torch.randn(batch, dim, length, generator=g) for _ in range(3))
    A = -torch.rand(dim, nstate, generator=g) - 0.1
    B, C = (torch.randn(batch, nstate, length, generator=g) for _ in range(2))
    D, bias = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    y, last = selective_scan_ref(u, delta, A, B, C, D, z, bias, True, None, True)
    move = dict(device=DEVICE)
    state = torch.zeros(batch, dim, nstate, **move)
    outs = [selective_state_update_triton(
        state, u[..., t].to(**move), delta[..., t].to(**move), A.to(**move),
        B[..., t].to(**move), C[..., t].to(**move), D.to(**move), z[..., t].to(**move),
        bias.to(**move), True) for t in range(length)]
    torch.testing.assert_close(torch.stack(outs, -1).cpu(), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.cpu(), last, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_step_on_cuda(dtype, tol):
    """Mamba-sized channels (several programs per row) on the GPU."""
    state, kw = make_step(batch=4, dim=1536, nstate=16, dtype=dtype, device="cuda")
    want_state, want = torch_step(state, **kw, dt_softplus=True)
    out = selective_state_update_triton(state, **kw, dt_softplus=True)
    torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
    torch.testing.assert_close(state.double(), want_state, rtol=tol, atol=tol)

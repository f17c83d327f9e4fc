"""selective_state_update: every backend against the sequential scan run for one token with
an initial state (the oracle), the state updated in place, bad input refused, and the backend
``"auto"`` picks for the op and for the Mamba block (CUDA emulated by monkeypatching).

Without a GPU, Triton runs in its CPU interpreter (TRITON_INTERPRET=1, set in conftest.py).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.core import scan
from seqprob.core.scan import selective_state_update
from seqprob.kernels.reference import selective_scan_ref
from seqprob.ssm import Mamba

TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5),
       torch.bfloat16: (2e-2, 2e-2)}
BACKENDS = ["reference", "cpu"] + (["triton"] if importlib.util.find_spec("triton") else [])


def make_step(batch=2, dim=5, nstate=4, *, dtype=torch.float32, seed=0, D=True, z=True,
              bias=True):
    """Keyword arguments of selective_state_update (the state fp32, or fp64 with fp64)."""
    g = torch.Generator().manual_seed(seed)
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    return dict(state=torch.randn(batch, dim, nstate, generator=g, dtype=torch.float64).to(wide),
                x=rand(batch, dim), dt=rand(batch, dim, scale=0.5),
                A=(-torch.rand(dim, nstate, generator=g, dtype=torch.float64) - 0.1).to(wide),
                B=rand(batch, nstate), C=rand(batch, nstate),
                D=rand(dim) if D else None, z=rand(batch, dim) if z else None,
                dt_bias=rand(dim, scale=0.3) if bias else None, dt_softplus=True)


def scan_one_token(kw):
    """The oracle: selective_scan_ref over a length-1 sequence from ``state``."""
    y, last = selective_scan_ref(
        kw["x"][..., None], kw["dt"][..., None], kw["A"], kw["B"][..., None],
        kw["C"][..., None], kw["D"], None if kw["z"] is None else kw["z"][..., None],
        kw["dt_bias"], kw["dt_softplus"], kw["state"], return_last_state=True)
    return y[..., 0], last


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("options", [(True, True, True), (False, False, False),
                                     (True, False, True)], ids=["D+z+bias", "plain", "D+bias"])
def test_matches_the_scan_for_one_token(backend, dtype, options):
    kw = make_step(dtype=dtype, D=options[0], z=options[1], bias=options[2])
    want_y, want_state = scan_one_token(kw)
    state = kw["state"]
    y = selective_state_update(**kw, backend=backend)
    rtol, atol = TOL[dtype]
    assert y.dtype == dtype and kw["state"] is state
    torch.testing.assert_close(y, want_y, rtol=rtol, atol=atol)
    torch.testing.assert_close(state, want_state.to(state.dtype), rtol=rtol, atol=atol)


@given(batch=st.integers(1, 4), dim=st.integers(1, 40), nstate=st.integers(1, 20),
       seed=st.integers(0, 2**16), softplus=st.booleans())
@settings(max_examples=30, deadline=None)
def test_cpu_property(batch, dim, nstate, seed, softplus):
    kw = {**make_step(batch, dim, nstate, seed=seed), "dt_softplus": softplus}
    if not softplus:
        kw["dt"], kw["dt_bias"] = kw["dt"].abs(), kw["dt_bias"].abs()
    want_y, want_state = scan_one_token(kw)
    y = selective_state_update(**kw, backend="cpu")
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kw["state"], want_state, rtol=1e-5, atol=1e-5)


def test_cpu_writes_a_non_contiguous_state_back_in_place():
    kw = make_step(dim=6, nstate=3)
    kw["state"] = kw["state"].transpose(1, 2).contiguous().transpose(1, 2)
    want_y, want_state = scan_one_token(kw)
    y = selective_state_update(**kw, backend="cpu")
    torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kw["state"], want_state, rtol=1e-5, atol=1e-5)


K = make_step()
BAD = [
    (dict(state=K["state"][0]), ValueError, r"state: expected 3 dimensions"),
    (dict(x=K["x"][:, :3]), ValueError, r"x: expected shape \(batch=2, dim=5\)"),
    (dict(A=K["A"][:, :2]), ValueError, r"A: expected shape \(dim=5, N=4\)"),
    (dict(B=K["B"][:1]), ValueError, r"B: expected shape \(batch=2, N=4\)"),
    (dict(D=K["D"][:2]), ValueError, r"D: expected shape \(dim=5\)"),
    (dict(z=K["z"].int()), TypeError, r"z: expected dtype in"),
    (dict(A=K["A"].half()), TypeError, r"A: expected dtype in \(float32, float64\)"),
    (dict(dt=K["dt"].clone().index_fill_(1, torch.tensor([2]), float("nan"))), ValueError,
     r"dt: expected finite values, got nan at index \(0, 2\)"),
    (dict(state=torch.zeros(2, 5, 257), A=torch.zeros(5, 257), B=torch.zeros(2, 257),
          C=torch.zeros(2, 257)), ValueError, r"state: expected at most 256 state dimensions"),
    (dict(A=-K["A"] * 1e3, dt=K["dt"].abs() + 50), ValueError, "overflowed"),
    (dict(backend="cuda"), ValueError, r"backend: expected one of"),
    (dict(backend="mamba_ssm"), ValueError, r"mamba_ssm"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD)
def test_refuses_bad_input(change, error, message):
    kw = {**make_step(), **change}
    with pytest.raises(error, match=message):
        selective_state_update(**kw)


def test_auto_backends_for_the_step(monkeypatch):
    picked = []
    monkeypatch.setattr(scan, "_step_backend",
                        lambda name: picked.append(name) or scan.selective_state_update_ref)
    selective_state_update(**make_step())
    monkeypatch.setattr(scan, "_device", lambda x: torch.device("cuda"))
    monkeypatch.setattr(scan, "_importable", lambda module: True)
    selective_state_update(**make_step())
    selective_state_update(**make_step(dtype=torch.float64))
    assert picked == ["cpu", "mamba_ssm", "triton"]


@pytest.fixture
def emulated_cuda(monkeypatch):
    """CUDA with mamba_ssm and Triton installed, as far as ``"auto"`` can tell; the kernels
    actually run are the references, and the names chosen are recorded."""
    picked = []
    monkeypatch.setattr(scan, "_device", lambda x: torch.device("cuda"))
    monkeypatch.setattr(scan, "_importable", lambda module: True)
    monkeypatch.setattr(scan, "_selective_backend",
                        lambda name: picked.append(("scan", name)) or scan.selective_scan_ref)
    monkeypatch.setattr(scan, "_step_backend", lambda name: picked.append(("step", name))
                        or scan.selective_state_update_ref)
    return picked


def test_mamba_reaches_mamba_ssm_when_it_can(emulated_cuda):
    block = Mamba(8, 4, random_state=0)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        _, state = block(x)                       # fresh forward: no initial_state
        block(x, state)                           # continuing: mamba_ssm has no initial_state
        block.step(x[:, 0], state)
    block(x)                                      # under autograd the last state needs grads
    block.outputs(x)                              # ... unless it is not asked for
    assert emulated_cuda == [("scan", "mamba_ssm"), ("scan", "triton"), ("step", "mamba_ssm"),
                             ("scan", "triton"), ("scan", "mamba_ssm")]


def test_mamba_on_cpu_uses_the_cpu_kernels(monkeypatch):
    picked = []
    real_scan, real_step = scan._selective_backend, scan._step_backend
    monkeypatch.setattr(scan, "_selective_backend",
                        lambda name: picked.append(name) or real_scan(name))
    monkeypatch.setattr(scan, "_step_backend", lambda name: picked.append(name) or real_step(name))
    block = Mamba(8, 4, random_state=0)
    with torch.no_grad():
        _, state = block(torch.randn(1, 3, 8))
        x_t = torch.randn(1, 8)
        assert block.step_backend(x_t, state) == "cpu"   # the fused block step, not the op
        block.step(x_t, state)
    assert picked == ["cpu"]

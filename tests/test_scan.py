"""selective_scan / linear_scan: every backend against the sequential reference (the oracle).

Without a GPU, Triton runs in its CPU interpreter (TRITON_INTERPRET=1, set in conftest.py).
"""

from __future__ import annotations

import importlib.util
import itertools
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.core import scan
from seqprob.core.scan import linear_scan, selective_scan
from seqprob.kernels import cpu as cpu_kernels

OPTIONS = ("D", "z", "delta_bias", "delta_softplus", "var_B", "var_C", "initial_state",
           "return_last_state")
# fp32 tolerances tighter than mamba_ssm's (rtol 6e-4, atol 2e-3); low precision as mamba_ssm.
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-4, 1e-4),
       torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}
GRAD_TOL = {torch.float64: (1e-9, 1e-9), torch.float32: (6e-4, 2e-3),
            torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}


def make_inputs(batch=2, dim=3, length=12, nstate=4, *, dtype=torch.float32, seed=0,
                options=OPTIONS):
    """Keyword arguments of selective_scan with the given options switched on."""
    g = torch.Generator().manual_seed(seed)
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    kw = dict(u=rand(batch, dim, length),
              delta=(torch.rand(batch, dim, length, generator=g, dtype=torch.float64) * 0.5
                     + 0.05).to(dtype),
              A=-torch.rand(dim, nstate, generator=g, dtype=torch.float64).to(
                  torch.float64 if dtype == torch.float64 else torch.float32) - 0.1,
              B=rand(batch, nstate, length) if "var_B" in options else rand(dim, nstate),
              C=rand(batch, nstate, length) if "var_C" in options else rand(dim, nstate))
    if "D" in options:
        kw["D"] = rand(dim)
    if "z" in options:
        kw["z"] = rand(batch, dim, length)
    if "delta_bias" in options:
        kw["delta_bias"] = rand(dim, scale=0.3)
    if "initial_state" in options:
        kw["initial_state"] = rand(batch, dim, nstate)
    kw["delta_softplus"] = "delta_softplus" in options
    kw["return_last_state"] = "return_last_state" in options
    return kw


def run_with_grads(kw, backend, seed=1):
    """Outputs of selective_scan and the gradients of a random projection w.r.t. every input."""
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if isinstance(v, torch.Tensor)}
    out = selective_scan(**{**kw, **leaves}, backend=backend)
    outs = out if isinstance(out, tuple) else (out,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)
                ).sum() for o in outs)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return outs, dict(zip(leaves, grads, strict=True))


def assert_agree(kw, backend, dtype=torch.float32):
    outs, grads = run_with_grads(kw, backend)
    ref_outs, ref_grads = run_with_grads(kw, "reference")
    rtol, atol = TOL[dtype]
    assert outs[0].dtype == kw["u"].dtype
    for o, r in zip(outs, ref_outs, strict=True):
        torch.testing.assert_close(o, r, rtol=rtol, atol=atol)
    rtol, atol = GRAD_TOL[dtype]
    for name, grad in grads.items():
        assert grad.dtype == kw[name].dtype, name
        torch.testing.assert_close(grad, ref_grads[name], rtol=rtol, atol=atol,
                                   msg=lambda m, name=name: f"d{name}: {m}")


ALL_COMBOS = [tuple(o for o, on in zip(OPTIONS, flags, strict=True) if on)
              for flags in itertools.product((False, True), repeat=len(OPTIONS))]


@pytest.mark.parametrize("options", ALL_COMBOS, ids=lambda o: "+".join(o) or "plain")
def test_cpu_matches_reference_every_option(options):
    assert_agree(make_inputs(length=40, options=options), "cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_cpu_matches_reference_dtypes(dtype):
    assert_agree(make_inputs(dtype=dtype, length=20), "cpu", dtype)


def test_cpu_fp16_inputs_with_fp32_weights():
    kw = make_inputs(dtype=torch.float16)
    kw["B"], kw["C"], kw["D"] = kw["B"].float(), kw["C"].float(), kw["D"].float()
    assert_agree(kw, "cpu", torch.float16)


@pytest.mark.parametrize("length", [1, 63, 64, 65, 129])
def test_cpu_lengths_around_the_checkpoint_interval(length):
    assert_agree(make_inputs(length=length), "cpu")


def test_cpu_non_contiguous_inputs():
    kw = make_inputs(batch=2, dim=3, length=10, nstate=4)
    kw["u"] = kw["u"].transpose(1, 2).contiguous().transpose(1, 2)                 # (B D L)
    kw["delta"] = kw["delta"].repeat(1, 1, 2)[:, :, ::2]
    kw["A"] = kw["A"].t().contiguous().t()
    kw["B"] = kw["B"].transpose(1, 2).contiguous().transpose(1, 2)
    kw["z"] = kw["z"].transpose(0, 1).contiguous().transpose(0, 1)
    assert not kw["u"].is_contiguous() and not kw["A"].is_contiguous()
    assert_agree(kw, "cpu")


def test_cpu_reads_and_writes_the_mamba_block_layout():
    """``.mT`` views of (B, L, D) memory, as the Mamba block passes them (z a chunk of a wider
    tensor): same values and gradients, and y comes back in (B, L, D) memory, uncopied."""
    kw = make_inputs(batch=2, dim=5, length=70, nstate=4)
    xz = torch.cat([kw["u"], kw["z"]], dim=1).mT.contiguous()                     # (B L 2D)
    kw["u"], kw["z"] = xz[..., :5].contiguous().mT, xz[..., 5:].mT                 # (B D L)
    kw["delta"] = kw["delta"].mT.contiguous().mT
    assert kw["u"].stride(1) == kw["z"].stride(1) == kw["delta"].stride(1) == 1
    assert_agree(kw, "cpu")
    y, _ = selective_scan(**kw, backend="cpu")
    assert y.mT.is_contiguous()


def mamba_layout(kw):
    """``u, delta, z`` as ``.mT`` views of (B, L, D) memory and B, C as ``.mT`` views of
    (B, L, N) memory: the layout in which the channel kernels run."""
    kw = dict(kw)
    for name in ("u", "delta", "z", "B", "C"):
        if name in kw and kw[name].dim() == 3:
            kw[name] = kw[name].mT.contiguous().mT
    return kw


CHANNEL_COMBOS = [o for o in ALL_COMBOS if "var_B" in o and "var_C" in o]


@pytest.mark.parametrize("options", CHANNEL_COMBOS, ids=lambda o: "+".join(o))
def test_cpu_channel_kernels_match_reference(options):
    """dim 70: one full block of ``WIDTH`` channels and a partial one; length 70: two
    checkpoint chunks, the second partial. delta_bias >= 0 keeps delta > 0 without softplus:
    a growing state would leave fp32 outputs near 0 beside ones of 1e12 (cancellation)."""
    kw = make_inputs(batch=2, dim=70, length=70, nstate=5, options=options)
    if "delta_bias" in kw:
        kw["delta_bias"] = kw["delta_bias"].abs()
    kw = mamba_layout(kw)
    assert cpu_kernels._use_channels(kw["u"], kw["B"], kw["C"])
    assert_agree(kw, "cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_cpu_channel_kernels_dtypes(dtype):
    assert_agree(mamba_layout(make_inputs(dim=7, length=30, dtype=dtype)), "cpu", dtype)


def test_cpu_channel_kernels_chosen_only_for_their_layout():
    kw = make_inputs(dim=4, length=8)
    mt = mamba_layout(kw)
    assert cpu_kernels._use_channels(mt["u"], mt["B"], mt["C"])
    assert not cpu_kernels._use_channels(kw["u"], kw["B"], kw["C"])              # (B D L)
    fixed = make_inputs(dim=4, length=8, options=("var_B",))
    assert not cpu_kernels._use_channels(mamba_layout(fixed)["u"], fixed["B"], fixed["C"])


def test_cpu_without_grad_matches_reference():
    kw = make_inputs(length=30)
    with torch.no_grad():
        y, last = selective_scan(**kw, backend="cpu")
        y_ref, last_ref = selective_scan(**kw, backend="reference")
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, last_ref, rtol=1e-4, atol=1e-4)


def test_last_state_continues_the_scan():
    kw = make_inputs(length=16, options=("D", "var_B", "var_C", "return_last_state"))
    whole, _ = selective_scan(**kw, backend="cpu")
    first = {**kw, "u": kw["u"][..., :7], "delta": kw["delta"][..., :7],
             "B": kw["B"][..., :7], "C": kw["C"][..., :7]}
    y1, state = selective_scan(**first, backend="cpu")
    second = {**kw, "u": kw["u"][..., 7:], "delta": kw["delta"][..., 7:], "B": kw["B"][..., 7:],
              "C": kw["C"][..., 7:], "initial_state": state}
    y2, _ = selective_scan(**second, backend="cpu")
    torch.testing.assert_close(torch.cat([y1, y2], -1), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("var_bc", [True, False])
def test_gradcheck_float64(backend, var_bc):
    options = ("D", "z", "delta_bias", "delta_softplus", "initial_state", "return_last_state",
               *(("var_B", "var_C") if var_bc else ()))
    kw = make_inputs(batch=2, dim=2, length=5, nstate=3, dtype=torch.float64, options=options)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    def fn(*tensors):
        return selective_scan(**{**kw, **dict(zip(names, tensors, strict=True))},
                              backend=backend)
    inputs = tuple(kw[k].clone().requires_grad_() for k in names)
    assert torch.autograd.gradcheck(fn, inputs)


@given(batch=st.integers(1, 3), dim=st.integers(1, 4), length=st.integers(1, 20),
       nstate=st.integers(1, 9), flags=st.lists(st.booleans(), min_size=8, max_size=8),
       seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_cpu_property_matches_reference(batch, dim, length, nstate, flags, seed):
    options = tuple(o for o, on in zip(OPTIONS, flags, strict=True) if on)
    assert_agree(make_inputs(batch, dim, length, nstate, seed=seed, options=options), "cpu")


def test_cpu_matches_mambapy_pscan():
    """A peer library as a second oracle: mambapy's pscan selective scan, its own layout."""
    pytest.importorskip("mambapy")
    from seqprob.kernels.peers import mambapy_selective_scan
    kw = make_inputs(batch=2, dim=16, length=40, nstate=8, options=("D", "var_B", "var_C"))
    ours = {k: v.clone().requires_grad_() for k, v in kw.items() if isinstance(v, torch.Tensor)}
    peer = {k: v.detach().clone().requires_grad_() for k, v in ours.items()}
    y = selective_scan(**ours, backend="cpu")
    y_peer = mambapy_selective_scan(*(peer[k].transpose(1, 2) for k in ("u", "delta")),
                                    peer["A"], *(peer[k].transpose(1, 2) for k in ("B", "C")),
                                    peer["D"]).transpose(1, 2)
    torch.testing.assert_close(y, y_peer, rtol=1e-4, atol=1e-4)
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (y * weight).sum().backward()
    (y_peer * weight).sum().backward()
    for name in ours:
        torch.testing.assert_close(ours[name].grad, peer[name].grad, rtol=6e-4, atol=2e-3)


@pytest.mark.slow
def test_cpu_matches_reference_larger_shape():
    assert_agree(make_inputs(batch=2, dim=64, length=600, nstate=16), "cpu")


# ---------------------------------------------------------------- bad inputs


def _bad(**changes):
    kw = make_inputs(options=("D", "z", "delta_bias", "initial_state"))
    kw.update(changes)
    return kw


def _with_nan(x, index):
    x = x.clone()
    x[index] = float("nan")
    return x


BASE = make_inputs(options=("D", "z", "delta_bias", "initial_state"))
BAD_SELECTIVE = [
    (_bad(u=torch.zeros(2, 3)), ValueError, "u: expected 3 dimensions"),
    (_bad(u=[[1.0]]), TypeError, "u: expected a torch.Tensor"),
    (_bad(delta=torch.rand(2, 3, 11)), ValueError, r"delta: expected shape \(batch=2, dim=3, length=12\)"),
    (_bad(A=-torch.rand(4, 4)), ValueError, r"A: expected shape \(dim=3, N\)"),
    (_bad(A=-torch.rand(3, 257)), ValueError, "at most 256 state dimensions"),
    (_bad(B=torch.randn(3, 5)), ValueError, r"B: expected shape \(dim=3, N=4\)"),
    (_bad(C=torch.randn(2, 4, 13)), ValueError, r"C: expected shape \(batch=2, N=4, length=12\)"),
    (_bad(C=torch.randn(4)), ValueError, "C: expected 3 dimensions"),
    (_bad(D=torch.randn(4)), ValueError, r"D: expected shape \(dim=3\)"),
    (_bad(z=torch.randn(1, 3, 12)), ValueError, r"z: expected shape"),
    (_bad(delta_bias=torch.randn(3, 1)), ValueError, "delta_bias: expected 1 dimensions"),
    (_bad(initial_state=torch.randn(2, 3, 5)), ValueError, r"initial_state: expected shape \(batch=2, dim=3, N=4\)"),
    (_bad(u=torch.zeros(2, 3, 12, dtype=torch.int64)), TypeError, r"u: expected dtype in \(float32"),
    (_bad(A=-torch.rand(3, 4).half()), TypeError, r"A: expected dtype in \(float32, float64\)"),
    (_bad(z=torch.zeros(2, 3, 12, dtype=torch.complex64)), TypeError, "z: expected dtype"),
    (_bad(delta=_with_nan(BASE["delta"], (1, 2, 3))), ValueError, r"delta: expected finite values, got nan at index \(1, 2, 3\)"),
    (_bad(B=BASE["B"] / 0), ValueError, "B: expected finite values"),
    (_bad(initial_state=_with_nan(BASE["initial_state"], (0, 0, 0))), ValueError, "initial_state: expected finite"),
    (_bad(B=torch.randn(3, 4, device="meta")), ValueError, "B: expected a tensor on cpu"),
    (_bad(A=torch.full((3, 4), 50.0), delta=torch.full((2, 3, 12), 10.0)), ValueError, "overflowed"),
    (_bad(backend="gpu"), ValueError, "backend: expected one of"),
    (_bad(backend="mamba_ssm"), ValueError, "mamba_ssm"),
]


@pytest.mark.parametrize(("kw", "error", "message"), BAD_SELECTIVE)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_selective_scan_refuses_bad_input(kw, error, message, backend):
    with pytest.raises(error, match=message):
        selective_scan(**{"backend": backend, **kw})


def test_triton_refused_on_cpu_tensors_without_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
        selective_scan(**make_inputs(), backend="triton")


def test_mamba_ssm_refuses_initial_state_and_names_the_install(monkeypatch):
    monkeypatch.setattr(scan, "_importable", lambda module: True)
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        selective_scan(**make_inputs(), backend="mamba_ssm")
    monkeypatch.setattr(scan, "_importable", lambda module: False)
    with pytest.raises(ValueError, match=r"pip install 'seqprob\[cuda\]'"):
        selective_scan(**make_inputs(), backend="mamba_ssm")


def test_auto_picks_cpu_on_cpu_and_warns_once_when_falling_back(monkeypatch):
    assert scan._auto(torch.device("cpu"), mamba_ok=True) == "cpu"
    monkeypatch.setattr(scan, "_importable", lambda module: False)
    monkeypatch.setattr(scan, "_WARNED", set())
    with pytest.warns(UserWarning, match="slow 'reference' backend"):
        assert scan._auto(torch.device("cuda"), mamba_ok=True) == "reference"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scan._auto(torch.device("cuda"), mamba_ok=True) == "reference"
    monkeypatch.setattr(scan, "_importable", lambda module: True)
    assert scan._auto(torch.device("cuda"), mamba_ok=True) == "mamba_ssm"
    assert scan._auto(torch.device("cuda"), mamba_ok=False) == "triton"


def test_backend_status_lists_every_concrete_backend():
    status = scan.backend_status()
    assert [name for name, _, _ in status] == ["cpu", "triton", "mamba_ssm", "reference"]
    assert dict((name, ok) for name, ok, _ in status)["cpu"] is True


# ---------------------------------------------------------------- linear_scan


def make_linear(batch=2, length=9, tail=(3, 2), dtype=torch.float32, seed=0, h0=True):
    g = torch.Generator().manual_seed(seed)
    def rand(*shape):
        real = torch.randn(*shape, generator=g, dtype=torch.float64)
        if dtype.is_complex:
            real = torch.complex(real, torch.randn(*shape, generator=g, dtype=torch.float64))
        return real.to(dtype)
    a = rand(batch, length, *tail) * 0.9
    a = a / a.abs().clamp(min=1.0)                                       # |a| <= 1
    return a, rand(batch, length, *tail), rand(batch, *tail) if h0 else None


def linear_agree(a, b, h0, backend, rtol, atol):
    leaves = [x.clone().requires_grad_() for x in (a, b, h0) if x is not None]
    def run(name):
        out = linear_scan(*leaves[:2], leaves[2] if h0 is not None else None, backend=name)
        w = torch.ones_like(out) * (1 + 0.5j if out.is_complex() else 1.5)
        loss = (out * w).real.sum() if out.is_complex() else (out * w).sum()
        return out, torch.autograd.grad(loss.float(), leaves)
    out, grads = run(backend)
    ref, ref_grads = run("reference")
    assert out.dtype == a.dtype
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64,
                                   torch.complex128, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("h0", [True, False])
def test_linear_cpu_matches_reference(dtype, h0):
    rtol, atol = TOL.get(dtype, TOL[torch.float32 if dtype == torch.complex64 else torch.float64])
    linear_agree(*make_linear(dtype=dtype, h0=h0, tail=(70,)), "cpu", rtol, atol)


def test_linear_cpu_non_contiguous_and_length_one():
    a, b, h0 = make_linear(length=1)
    linear_agree(a, b, h0, "cpu", 1e-5, 1e-5)
    a, b, h0 = make_linear(tail=(4, 3))
    linear_agree(a.transpose(2, 3), b.transpose(2, 3), h0.transpose(1, 2), "cpu", 1e-5, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_linear_gradcheck(dtype, backend):
    a, b, h0 = (x.requires_grad_() for x in make_linear(batch=2, length=6, tail=(3,),
                                                          dtype=dtype))
    assert torch.autograd.gradcheck(
        lambda a, b, h0: linear_scan(a, b, h0, backend=backend), (a, b, h0))


@given(batch=st.integers(1, 3), length=st.integers(1, 30),
       tail=st.lists(st.integers(1, 5), min_size=0, max_size=2), h0=st.booleans(),
       seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_linear_cpu_property(batch, length, tail, h0, seed):
    linear_agree(*make_linear(batch, length, tuple(tail), seed=seed, h0=h0), "cpu", 1e-5, 1e-5)


def test_linear_matches_selective_with_one_state():
    # a selective scan with N=1, B=C=1 and no D is the linear scan of (exp(delta A), delta u)
    kw = make_inputs(batch=2, dim=3, length=11, nstate=1, options=())
    kw["B"], kw["C"] = torch.ones(3, 1), torch.ones(3, 1)
    y = selective_scan(**kw, backend="cpu")                                    # (B D L)
    a = torch.exp(kw["delta"] * kw["A"][:, 0, None]).transpose(1, 2)          # (B L D)
    h = linear_scan(a, (kw["delta"] * kw["u"]).transpose(1, 2), backend="cpu")
    torch.testing.assert_close(h.transpose(1, 2), y, rtol=1e-5, atol=1e-5)


A_, B_, H_ = make_linear()
BAD_LINEAR = [
    (dict(a=A_[0, 0, 0], b=B_[0, 0, 0]), ValueError, "a: expected at least 2 dimensions"),
    (dict(a=A_, b=B_[:, :-1]), ValueError, r"b: expected shape \(2, 9, 3, 2\)"),
    (dict(a=A_, b=B_.double()), TypeError, r"b: expected dtype in \(float32\)"),
    (dict(a=A_.int(), b=B_.int()), TypeError, "a: expected dtype in"),
    (dict(a=A_, b=B_, initial_state=H_[:, :2]), ValueError, r"initial_state: expected shape \(2, 3, 2\)"),
    (dict(a=A_, b=_with_nan(B_, (0, 1, 2, 1))), ValueError, r"b: expected finite values, got nan at index \(0, 1, 2, 1\)"),
    (dict(a=A_ * 1e30, b=B_ * 1e30), ValueError, "overflowed"),
    (dict(a=A_, b=B_, backend="mamba_ssm"), ValueError, "backend: expected one of"),
]


@pytest.mark.parametrize(("kw", "error", "message"), BAD_LINEAR)
def test_linear_scan_refuses_bad_input(kw, error, message):
    with pytest.raises(error, match=message):
        linear_scan(**kw)


# ---------------------------------------------------------------- triton (interpreter)


@pytest.fixture
def triton_interpreter():
    """Skip without Triton, or with a GPU (no interpreter: the gpu-marked tests run the Triton
    kernels on CUDA tensors there); conftest.py switches the interpreter on without one."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("Triton is not installed (pip install 'seqprob[gpu]')")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("a CUDA device is present: Triton runs in the gpu-marked tests")


TRITON_CASES = [
    ("D", "z", "delta_bias", "delta_softplus", "var_B", "var_C", "initial_state",
     "return_last_state"),
    ("D", "var_B", "return_last_state"),
    ("z", "delta_softplus", "var_C", "initial_state"),
]


@pytest.mark.parametrize("options", TRITON_CASES, ids=lambda o: "+".join(o))
def test_triton_matches_reference(triton_interpreter, options):
    # 37 steps: two checkpoint chunks (CHUNK = 32), the second one partial
    length = 37 if len(options) == len(OPTIONS) else 13
    assert_agree(make_inputs(batch=2, dim=3, length=length, nstate=5, options=options), "triton")


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
def test_triton_dtypes_and_non_contiguous(triton_interpreter, dtype):
    kw = make_inputs(batch=1, dim=2, length=9, nstate=3, dtype=dtype)
    kw["u"] = kw["u"].transpose(1, 2).contiguous().transpose(1, 2)
    assert_agree(kw, "triton", dtype)


def test_triton_length_one(triton_interpreter):
    assert_agree(make_inputs(batch=1, dim=2, length=1, nstate=3), "triton")


@pytest.mark.parametrize("h0", [True, False])
def test_triton_linear_matches_reference(triton_interpreter, h0):
    linear_agree(*make_linear(length=12, h0=h0), "triton", 1e-5, 1e-5)
    with pytest.raises(ValueError, match="real dtypes only"):
        linear_scan(*make_linear(dtype=torch.complex64), backend="triton")


@pytest.mark.slow
@pytest.mark.parametrize("options", ALL_COMBOS[::16], ids=lambda o: "+".join(o) or "plain")
def test_triton_matches_reference_more_options(triton_interpreter, options):
    assert_agree(make_inputs(batch=2, dim=3, length=40, nstate=4, options=options), "triton")


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["triton", "mamba_ssm"])
@pytest.mark.parametrize("options", TRITON_CASES[1:], ids=lambda o: "+".join(o))
def test_gpu_backends_match_reference(backend, options):
    if backend == "mamba_ssm":
        pytest.importorskip("mamba_ssm")
        options = tuple(o for o in options if o not in ("initial_state", "return_last_state"))
    kw = make_inputs(batch=2, dim=64, length=300, nstate=16, options=options)
    kw = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    assert_agree(kw, backend)

"""The fused numba Mamba step (``step_backend`` ``"cpu"``) against its pure-torch twin
(``Mamba._step_torch``, the ``"reference"`` path) and mambapy's step, the choice between
them, the weight cache, and the fp32 exp/softplus helpers the CPU kernels share."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from seqprob.core.scan import selective_scan
from seqprob.kernels.cpu import _exp, _softplus
from seqprob.kernels.cpu_step import linear_cpu
from seqprob.kernels.limits import LINEAR_MAX_ROWS
from seqprob.ssm import Mamba, MambaLM
from seqprob.ssm.mamba import MambaState

TOL = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


def _block(dtype, d_model=12, d_state=5, d_conv=4, expand=2, bias=False, conv_bias=True,
           seed=0):
    block = Mamba(d_model, d_state, d_conv=d_conv, expand=expand, bias=bias,
                  conv_bias=conv_bias, random_state=seed).to(dtype)
    with torch.no_grad():                    # every weight away from its init pattern
        for p in block.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed),
                                     dtype=dtype))
    return block


def _random_state(block: Mamba, batch: int, dtype, seed=1) -> MambaState:
    g = torch.Generator().manual_seed(seed)
    state = block.init_state(batch, dtype=dtype)
    return MambaState(conv=torch.randn(state.conv.shape, generator=g, dtype=dtype),
                      ssm=torch.randn(state.ssm.shape, generator=g, dtype=dtype))


def _assert_steps_agree(got, want, dtype):
    (y1, s1), (y2, s2) = got, want
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    torch.testing.assert_close(s1.conv, s2.conv, **TOL[dtype])
    torch.testing.assert_close(s1.ssm, s2.ssm, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [
    dict(), dict(d_conv=2, expand=1), dict(d_conv=1), dict(bias=True, conv_bias=False),
    dict(d_model=40, d_state=16, dt_rank_like=True)],
    ids=["default", "conv2-expand1", "conv1", "bias-noconvbias", "d40-N16"])
@torch.no_grad()
def test_fused_step_equals_torch_twin(dtype, shape):
    shape = {k: v for k, v in shape.items() if k != "dt_rank_like"}
    block = _block(dtype, **shape)
    state = _random_state(block, 3, dtype)
    before = (state.conv.clone(), state.ssm.clone())
    x = torch.randn(3, block.d_model, dtype=dtype)
    assert block.step_backend(x, state) == "cpu"
    fused = block.step(x, state)
    _assert_steps_agree(fused, block._step_torch(x, state), dtype)
    torch.testing.assert_close(state.conv, before[0], rtol=0, atol=0)    # input untouched
    torch.testing.assert_close(state.ssm, before[1], rtol=0, atol=0)
    assert fused[1].ssm.data_ptr() != state.ssm.data_ptr()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@torch.no_grad()
def test_fused_residual_step_equals_norm_block_residual(dtype):
    block = _block(dtype)
    weight = 0.5 + torch.rand(block.d_model, dtype=dtype)
    state = _random_state(block, 2, dtype)
    h = torch.randn(2, block.d_model, dtype=dtype)
    y, new = block._step_torch(F.rms_norm(h, weight.shape, weight, 1e-5), state)
    _assert_steps_agree(block.step_residual_unchecked(h, state, weight, 1e-5), (h + y, new),
                        dtype)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), d_model=st.integers(1, 9), d_state=st.integers(1, 9),
       d_conv=st.integers(1, 5), expand=st.integers(1, 3), seed=st.integers(0, 2**16))
@torch.no_grad()
def test_fused_step_equals_torch_twin_on_random_shapes(batch, d_model, d_state, d_conv, expand,
                                                       seed):
    block = _block(torch.float64, d_model, d_state, d_conv, expand, seed=seed)
    state = _random_state(block, batch, torch.float64, seed)
    x = torch.randn(batch, d_model, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))
    _assert_steps_agree(block.step(x, state), block._step_torch(x, state), torch.float64)


@torch.no_grad()
def test_fused_generation_equals_mambapy_step():
    mambapy = pytest.importorskip("mambapy.mamba")
    torch.manual_seed(0)
    ref = mambapy.Mamba(mambapy.MambaConfig(d_model=16, n_layers=1, d_state=8)).layers[0].mixer
    ours = Mamba(16, 8, random_state=0)
    ours.load_state_dict({name: ref.state_dict()[name] for name in ours.state_dict()})
    x = torch.randn(2, 9, 16)
    cache = (torch.zeros(2, 32, 8), torch.zeros(2, 32, 3))
    state = ours.init_state(2)
    for t in range(9):
        assert ours.step_backend(x[:, t], state) == "cpu"
        want, cache = ref.step(x[:, t], cache)
        got, state = ours.step(x[:, t], state)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.ssm, cache[0], rtol=1e-5, atol=1e-6)


def test_step_backend_choice():
    block = Mamba(8, 4, random_state=0)
    state, x = block.init_state(2), torch.randn(2, 8)
    assert block.step_backend(x, state) == "reference"          # gradients are recorded
    with torch.no_grad():
        assert block.step_backend(x, state) == "cpu"
        assert block.step_backend(x.bfloat16(), state) == "reference"
        assert Mamba(8, 4, backend="reference").step_backend(x, state) == "reference"
        fp64 = MambaState(conv=state.conv.double(), ssm=state.ssm)
        assert block.double().step_backend(x.double(), fp64) == "reference"   # mixed states
    frozen = Mamba(8, 4, random_state=0).requires_grad_(False)
    assert frozen.step_backend(x, state) == "cpu"
    assert frozen.step_backend(x.requires_grad_(), state) == "reference"


@torch.no_grad()
def test_weight_cache_follows_parameter_updates():
    block = _block(torch.float32)
    state, x = _random_state(block, 2, torch.float32), torch.randn(2, block.d_model)
    block.step(x, state)                                        # fills the cache
    for p in block.parameters():                                # an in-place update
        p.mul_(1.1)
    _assert_steps_agree(block.step(x, state), block._step_torch(x, state), torch.float32)
    block.load_state_dict(_block(torch.float32, seed=3).state_dict())
    _assert_steps_agree(block.step(x, state), block._step_torch(x, state), torch.float32)
    block.double()                                              # new storage and dtype
    state64 = MambaState(conv=state.conv.double(), ssm=state.ssm.double())
    _assert_steps_agree(block.step(x.double(), state64), block._step_torch(x.double(), state64),
                        torch.float64)


@torch.no_grad()
def test_pickles_and_copies_leave_the_step_cache_out():
    block = _block(torch.float32, d_model=64)
    state, x = _random_state(block, 1, torch.float32), torch.randn(1, 64)
    size = len(pickle.dumps(block))
    want = block.step(x, state)
    assert block._step_cache is not None
    assert len(pickle.dumps(block)) < 1.05 * size
    for other in (copy.deepcopy(block), pickle.loads(pickle.dumps(block))):
        assert other._step_cache is None
        _assert_steps_agree(other.step(x, state), want, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@torch.no_grad()
def test_language_model_fused_steps_equal_reference_steps_and_forward(dtype):
    fused, ref = (MambaLM(24, 3, d_state=6, backend=backend, random_state=0).to(dtype)
                  for backend in ("auto", "reference"))
    for block in fused.layers:
        block.norm.weight.uniform_(0.5, 1.5)
    ref.load_state_dict(fused.state_dict())
    ids = torch.randint(0, 259, (2, 7), generator=torch.Generator().manual_seed(0))
    states = [fused.init_state(2), ref.init_state(2)]
    for t in range(7):
        h = fused.embedding(ids[:, t])
        assert fused.layers[0].mixer.step_backend(h, states[0].layers[0]) == "cpu"
        assert ref.layers[0].mixer.step_backend(h, states[1].layers[0]) == "reference"
        (got, states[0]), (want, states[1]) = (lm.step(ids[:, t], s)
                                               for lm, s in zip((fused, ref), states, strict=True))
        torch.testing.assert_close(got, want, **TOL[torch.float32])
    for a, b in zip(states[0].layers, states[1].layers, strict=True):
        _assert_steps_agree((a.ssm, a), (b.ssm, b), dtype)
    torch.testing.assert_close(got, fused.run(input_ids=ids).logits[:, -1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_cpu_equals_matmul(batch, dtype):
    g = torch.Generator().manual_seed(batch)
    x, w = (torch.randn(*shape, generator=g, dtype=dtype) for shape in ((batch, 33), (70, 33)))
    torch.testing.assert_close(linear_cpu(x, w), x @ w.T, **TOL[dtype])


@torch.no_grad()
def test_language_model_head_uses_linear_cpu_for_small_batches(monkeypatch):
    from seqprob.kernels import cpu_step
    calls = []
    monkeypatch.setattr(cpu_step, "linear_cpu",
                        lambda x, w: calls.append(x.shape[0]) or x @ w.T)
    for backend, batch, want in (("auto", 2, [2]), ("auto", LINEAR_MAX_ROWS + 1, []),
                                 ("reference", 2, [])):
        calls.clear()
        lm = MambaLM(16, 1, d_state=4, backend=backend, random_state=0)
        lm.step(torch.zeros(batch, dtype=torch.long), lm.init_state(batch))
        assert calls == want


def test_s4d_mixer_refuses_an_odd_state_size():
    with pytest.raises(ValueError, match=r"d_state: expected an even size with mixer='s4d'.*5"):
        MambaLM(16, 1, d_state=5, mixer="s4d")
    assert MambaLM(16, 1, d_state=6, mixer="s4d").layers[0].mixer.get_config()["d_state"] == 6


@njit
def _exp_all(x, out):
    for i in range(x.size):
        out[i] = _exp(x[i])


@njit
def _softplus_all(x, out):
    for i in range(x.size):
        out[i] = _softplus(x[i])


def test_fast_exp_overflows_to_inf_and_matches_libm():
    x = np.concatenate([np.linspace(-87, 88.3, 20001), [88.73, 89.0, 100.0, 1e30]])
    out = np.empty(x.size, dtype=np.float32)
    _exp_all(x.astype(np.float32), out)
    want = np.exp(x[:-4].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(out[:-4], want, rtol=5e-7)
    assert np.isinf(out[-4:]).all()                       # beyond FLT_MAX: inf, like libm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_is_stable_and_exact_for_large_input(dtype):
    x = np.concatenate([np.linspace(-60, 60, 20001), [100.0, 1e4, 1e30, 3e38, -1e30]])
    out = np.empty(x.size, dtype=dtype)
    _softplus_all(x.astype(dtype), out)
    want = F.softplus(torch.from_numpy(x.astype(dtype).astype(np.float64)), threshold=1e3).numpy()
    assert np.isfinite(out).all()
    rtol = 5e-7 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(out[want > 1e-30], want[want > 1e-30], rtol=rtol)
    np.testing.assert_array_equal(out[-4:-1], x[-4:-1].astype(dtype))    # identity, exactly
    assert 0 <= out[-1] < 1e-37


def test_cpu_scan_growing_mode_raises_instead_of_saturating():
    # x_1 = exp(dt a) x_0 with dt a = 100: the true state is ~2.7e43, beyond fp32.
    u, delta = torch.zeros(1, 1, 1), torch.ones(1, 1, 1)
    A, B, C = torch.full((1, 1), 100.0), torch.ones(1, 1, 1), torch.ones(1, 1, 1)
    for backend in ("reference", "cpu"):
        with pytest.raises(ValueError, match="overflowed"):
            selective_scan(u, delta, A, B, C, initial_state=torch.ones(1, 1, 1),
                           backend=backend)

"""S4D, S4 and companion layers: arbitrary split points, long inputs in chunks, persistence."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqprob.core import load
from seqprob.ssm import S4, S4D, CompanionSSM, Mamba, lti

MAKERS = {
    "s4d": lambda: S4D(3, 8, random_state=0),
    "s4d-bilinear": lambda: S4D(3, 8, discretization="bilinear", random_state=0),
    "s4": lambda: S4(3, 8, l_max=40, random_state=0),
    "companion": lambda: CompanionSSM(3, 6, l_max=40, random_state=0),
    "mamba": lambda: Mamba(3, 4, random_state=0),
}
LAYERS = {name: make() for name, make in MAKERS.items()}


@given(name=st.sampled_from(sorted(MAKERS)), cuts=st.lists(st.integers(1, 29), max_size=3),
       seed=st.integers(0, 1000))
@settings(max_examples=12, deadline=None)
@torch.no_grad()
def test_any_split_continues_exactly(name, cuts, seed):
    layer = LAYERS[name]
    x = torch.randn(2, 30, 3, generator=torch.Generator().manual_seed(seed))
    whole, state = layer(x)
    bounds = [0, *sorted(set(cuts)), 30]
    parts, s = [], None
    for lo, hi in itertools.pairwise(bounds):
        y, s = layer(x[:, lo:hi], s)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-4, atol=2e-5)
    for (_, a), (_, b) in zip(s.named_tensors(), state.named_tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["s4d", "s4", "companion"])
@torch.no_grad()
def test_small_chunks_give_the_same_result(name, monkeypatch):
    layer = MAKERS[name]()
    x = torch.randn(2, 37, 3)
    y, state = layer(x)
    _, s0 = layer(x[:, :5])
    y_cont, s_cont = layer(x[:, 5:], s0)
    monkeypatch.setattr(lti, "ELEMENT_BUDGET", 8)
    y_small, state_small = layer(x)
    y_cont_small, s_cont_small = layer(x[:, 5:], s0)
    torch.testing.assert_close(y_small, y, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(state_small.x, state.x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y_cont_small, y_cont, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s_cont_small.x, s_cont.x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_save_load_and_gradients(name, tmp_path):
    layer = MAKERS[name]()
    x = torch.randn(2, 9, 3)
    y, _ = layer(x)
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters()
               if p.requires_grad)
    layer.save(tmp_path / "layer.safetensors")
    again = load(tmp_path / "layer.safetensors")
    assert type(again) is type(layer)
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], layer(x)[0])


@torch.no_grad()
def test_s4_shorter_inputs_use_the_truncated_kernel():
    layer = S4(2, 8, l_max=64, random_state=0)
    x = torch.randn(1, 20, 2)
    y, _ = layer(x)
    state = layer.init_state(1)
    ys = []
    for t in range(20):
        y_t, state = layer.step(x[:, t], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-4, atol=2e-5)

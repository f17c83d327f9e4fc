"""The contract law, checked for every registered SequenceModel (tests/contract_cases/)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import seqprob
import tests.contract_cases as registry
from seqprob.core import SequenceModel


def _all_cases():
    cases = []
    for info in sorted(pkgutil.iter_modules(registry.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{registry.__name__}.{info.name}")
        cases.extend(module.CASES)
    return cases


CASES = _all_cases()


def _build(case):
    torch.manual_seed(0)
    model = case.make_model().eval()
    x = case.make_input(torch.Generator().manual_seed(1))
    return model, x


def _assert_states_close(got, want, case):
    got_named, want_named = got.named_tensors(), want.named_tensors()
    assert [n for n, _ in got_named] == [n for n, _ in want_named]
    for (name, g), (_, w) in zip(got_named, want_named, strict=True):
        torch.testing.assert_close(g, w, rtol=case.rtol, atol=case.atol, msg=lambda m, n=name: f"state.{n}: {m}")


def test_registry_is_not_empty():
    assert len(CASES) >= 1


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _import_every_seqprob_module():
    """Import each module of the package (a module whose optional dependency is missing
    cannot define a usable model here and is skipped)."""
    for info in pkgutil.walk_packages(seqprob.__path__, "seqprob."):
        if info.name != "seqprob.__main__":
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as err:
                if (err.name or "seqprob").startswith("seqprob"):
                    raise


def test_every_sequence_model_in_the_package_has_a_case():
    _import_every_seqprob_module()
    concrete = {cls for cls in _subclasses(SequenceModel)
                if cls.__module__.startswith("seqprob.") and not inspect.isabstract(cls)}
    covered = {type(case.make_model()) for case in CASES}
    missing = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in concrete - covered)
    assert not missing, f"SequenceModel subclasses without a contract case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@torch.no_grad()
def test_step_equals_forward(case):
    model, x = _build(case)
    y, state = model(x)
    step_state = model.init_state(x.shape[0], device=x.device)
    ys = []
    for t in range(x.shape[1]):
        y_t, step_state = model.step(x[:, t], step_state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, dim=1), y, rtol=case.rtol, atol=case.atol)
    _assert_states_close(step_state, state, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@torch.no_grad()
def test_chunked_forward_equals_whole(case):
    model, x = _build(case)
    y, state = model(x)
    split = x.shape[1] // 2
    y1, s1 = model(x[:, :split])
    y2, s2 = model(x[:, split:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y, rtol=case.rtol, atol=case.atol)
    _assert_states_close(s2, state, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@torch.no_grad()
def test_state_reorder_and_detach(case):
    model, x = _build(case)
    _, state = model(x)
    index = torch.arange(x.shape[0] - 1, -1, -1)
    reordered = state.reorder(index)
    for (_, r), (_, s) in zip(reordered.named_tensors(), state.named_tensors(), strict=True):
        torch.testing.assert_close(r, s.index_select(0, index))
    assert all(not t.requires_grad for _, t in state.detach().named_tensors())

"""Input and state checks shared by the SSM layers; every error names the argument."""

from __future__ import annotations

from torch import Tensor

from seqprob.core.contract import State
from seqprob.core.validation import check_finite, check_shape, check_tensor, describe


def check_sequence(x: Tensor, name: str, d_model: int, max_length: int | None,
                   limit_name: str = "l_max") -> Tensor:
    """``x`` of shape ``(batch, length, d_model)``, floating, finite, not longer than
    ``max_length`` (the argument the user set it with: ``limit_name``)."""
    check_tensor(x, name)
    check_shape(x, name, ("batch", "length", d_model))
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {describe(x)}")
    if max_length is not None and x.shape[1] > max_length:
        raise ValueError(f"{name}: expected a length <= {max_length} (the configured maximum, "
                         f"{limit_name}), got length {x.shape[1]}")
    return check_finite(x, name)


def check_step_input(x_t: Tensor, name: str, d_model: int) -> Tensor:
    """``x_t`` of shape ``(batch, d_model)``, floating and finite."""
    check_tensor(x_t, name)
    check_shape(x_t, name, ("batch", d_model))
    if not x_t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {describe(x_t)}")
    return check_finite(x_t, name)


def check_state(state: State, expected: State, owner: str) -> State:
    """``state`` must have the class and the tensor shapes of ``expected`` (``init_state``,
    typically on the ``meta`` device: shapes without memory)."""
    if not isinstance(state, type(expected)):
        raise TypeError(f"state: expected a {type(expected).__name__} from {owner}.init_state, "
                        f"got {type(state).__name__}")
    got, want = state.named_tensors(), expected.named_tensors()
    if [n for n, _ in got] != [n for n, _ in want]:
        raise ValueError(f"state: expected fields {[n for n, _ in want]} of {owner}, "
                         f"got {[n for n, _ in got]} (a state from a different model)")
    for (name, g), (_, w) in zip(got, want, strict=True):
        if g.shape != w.shape:
            what = ("batch size" if g.shape[1:] == w.shape[1:] else "model")
            raise ValueError(f"state.{name}: expected shape {tuple(w.shape)} for {owner}, got "
                             f"{tuple(g.shape)} (a state from a different {what})")
    return state

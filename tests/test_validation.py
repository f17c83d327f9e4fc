import numpy as np
import pytest
import torch

from seqprob.core.validation import (
    check_choice,
    check_dtype,
    check_finite,
    check_float,
    check_int,
    check_lengths,
    check_shape,
)


def test_shapes_bind_symbols_across_tensors():
    dims = {}
    check_shape(torch.zeros(2, 3, 5), "u", ("B", "D", "L"), dims)
    check_shape(torch.zeros(3, 4), "A", ("D", "N"), dims)
    assert dims == {"B": 2, "D": 3, "L": 5, "N": 4}
    with pytest.raises(ValueError, match=r"delta: expected shape \(B=2, D=3, L=5\), got \(2, 3, 6\)"):
        check_shape(torch.zeros(2, 3, 6), "delta", ("B", "D", "L"), dims)
    with pytest.raises(ValueError, match="z: expected 3 dimensions"):
        check_shape(torch.zeros(2, 3), "z", ("B", "D", "L"), dims)
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got list"):
        check_shape([1, 2], "x", (None,))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: check_int(0, "n_components", minimum=1), ValueError, "n_components: expected an integer >= 1, got 0"),
        (lambda: check_int(True, "n", minimum=1), TypeError, "n: expected an integer"),
        (lambda: check_int(2.0, "n"), TypeError, "n: expected an integer"),
        (lambda: check_float(1.5, "top_p", low=0, high=1, low_open=True), ValueError, r"top_p: expected a value in \(0, 1\]"),
        (lambda: check_float(float("nan"), "t", low=0), ValueError, "t: expected a value"),
        (lambda: check_choice("x", "backend", ("cpu",)), ValueError, "backend: expected one of"),
        (lambda: check_dtype(torch.zeros(1, dtype=torch.int64), "u", (torch.float32,)), TypeError, "u: expected dtype in"),
        (lambda: check_finite(torch.tensor([1.0, float("nan")]), "u"), ValueError, r"u: expected finite values, got nan at index \(1,\)"),
        (lambda: check_lengths([2, 2], 5), ValueError, "summing to 5"),
        (lambda: check_lengths([5, 0], 5), ValueError, "positive entries"),
        (lambda: check_lengths([[5]], 5), ValueError, "1-D sequence of integers"),
    ],
)
def test_errors_name_argument_expected_and_received(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_accepted_values_pass_through():
    assert check_int(np.int64(3), "n", minimum=1) == 3
    assert check_float(1, "top_p", low=0, high=1, low_open=True) == 1.0
    np.testing.assert_array_equal(check_lengths(None, 7), [7])
    np.testing.assert_array_equal(check_lengths(np.array([3, 4]), 7), [3, 4])


@pytest.mark.parametrize("device", ["bogus", "cuda:x", "", 0])
def test_estimators_refuse_a_bad_device_when_fit_starts(device):
    from sklearn.utils._param_validation import InvalidParameterError

    from seqprob.forecasting import AutoTimesForecaster, NeuralForecaster
    from seqprob.hmm import GaussianHMM

    y = np.zeros((200, 1))
    for model in (NeuralForecaster(device=device), GaussianHMM(2, device=device),
                  AutoTimesForecaster(None, width=4, device=device)):
        with pytest.raises(InvalidParameterError, match="'device' parameter of .* must be "
                           "'auto' or a torch device string"):
            model.fit(y)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "meta"])
def test_device_strings_torch_parses_are_accepted(device):
    from seqprob.core.constraints import DeviceString

    assert DeviceString().is_satisfied_by(device)

"""Bad input to the SSM layers and models: clear errors that name the argument."""

from __future__ import annotations

import pytest
import torch

from seqprob.kernels.limits import LTI_MAX_STATE, SCAN_MAX_STATE
from seqprob.ssm import S4, S4D, CompanionSSM, Mamba, MambaLM, SpaceTime
from seqprob.ssm.spacetime import SpaceTimeEncoder

LAYERS = {
    "s4d": lambda: S4D(4, 8, l_max=32, random_state=0),
    "s4": lambda: S4(4, 8, l_max=32, random_state=0),
    "companion": lambda: CompanionSSM(4, 5, l_max=32, random_state=0),
    "mamba": lambda: Mamba(4, 4, random_state=0),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("x,exc,match", [
    (torch.randn(2, 5), ValueError, r"x: expected 3 dimensions"),
    (torch.randn(2, 5, 3), ValueError, r"x: expected shape \(batch=2, length=5, 4\)"),
    (torch.ones(2, 5, 4, dtype=torch.long), TypeError, r"x: expected a floating-point"),
    (torch.full((2, 5, 4), float("nan")), ValueError, r"x: expected finite values"),
    (torch.tensor([[[0.0, float("inf"), 0, 0]]]), ValueError, r"x: expected finite"),
    ([[0.0]], TypeError, r"x: expected a torch.Tensor"),
])
def test_bad_sequences(name, x, exc, match):
    with pytest.raises(exc, match=match):
        LAYERS[name]()(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bad_step_inputs_and_states(name):
    layer = LAYERS[name]()
    state = layer.init_state(2)
    with pytest.raises(ValueError, match=r"x_t: expected shape"):
        layer.step(torch.randn(2, 3), state)
    with pytest.raises(ValueError, match=r"x_t: expected finite"):
        layer.step(torch.full((2, 4), float("nan")), state)
    with pytest.raises(ValueError, match=r"state\.\w+: expected shape .* different batch size"):
        layer(torch.randn(3, 5, 4), state)
    with pytest.raises(ValueError, match=r"state\.\w+: expected shape .* different batch size"):
        layer.step(torch.randn(3, 4), state)


def test_state_from_a_different_model():
    s4d, mamba = S4D(4, 8), Mamba(4, 4)
    with pytest.raises(TypeError, match=r"state: expected a MambaState from Mamba.init_state, got SSMState"):
        mamba(torch.randn(2, 5, 4), s4d.init_state(2))
    with pytest.raises(ValueError, match=r"state\.x: expected shape .* different model"):
        s4d(torch.randn(2, 5, 4), S4D(4, 16).init_state(2))
    lm = MambaLM(16, 2, d_state=4)
    with pytest.raises(ValueError, match=r"state: expected an LMState with 2 layers"):
        lm.run(input_ids=torch.zeros(2, 3, dtype=torch.long),
               state=MambaLM(16, 3, d_state=4).init_state(2))


@pytest.mark.parametrize("make", [
    lambda: S4D(4, 11), lambda: S4D(4, 2 * LTI_MAX_STATE), lambda: S4(4, 0),
    lambda: CompanionSSM(4, LTI_MAX_STATE + 1), lambda: Mamba(4, SCAN_MAX_STATE + 1),
    lambda: Mamba(8, d_state=300), lambda: MambaLM(16, 1, d_state=300),
])
def test_d_state_limits(make):
    with pytest.raises(ValueError, match=r"d_state: expected"):
        make()


@pytest.mark.parametrize("make", [lambda: S4(4, 8, l_max=16), lambda: S4D(4, 8, l_max=16),
                                  lambda: CompanionSSM(4, 4, l_max=16)])
def test_length_above_configured_maximum(make):
    with pytest.raises(ValueError, match=r"x: expected a length <= 16 .* got length 17"):
        make()(torch.randn(1, 17, 4))


def test_bad_config_values():
    with pytest.raises(ValueError, match="discretization"):
        S4D(4, 8, discretization="euler")
    with pytest.raises(ValueError, match="init"):
        S4D(4, 8, init="legs")
    with pytest.raises(ValueError, match="backend"):
        Mamba(4, backend="cuda-magic")
    with pytest.raises(ValueError, match="dt_min"):
        Mamba(4, dt_min=0.0)
    with pytest.raises(ValueError, match="mixer"):
        MambaLM(mixer="lstm")


def test_language_model_bad_ids():
    lm = MambaLM(16, 1, d_state=4)
    with pytest.raises(ValueError, match=r"input_ids: expected ids in \[0, 264\)"):
        lm.run(input_ids=torch.tensor([[1, 264]]))
    with pytest.raises(TypeError, match=r"input_ids: expected integer token ids"):
        lm.run(input_ids=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"exactly one"):
        lm.run()
    with pytest.raises(ValueError, match=r"attention_mask: expected shape"):
        lm.run(input_ids=torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"inputs_embeds: expected shape"):
        lm.run(inputs_embeds=torch.zeros(1, 3, 5))


def test_spacetime_bad_input():
    model = SpaceTime(2, 16, 4, d_model=8, d_state=4, n_heads=2, random_state=0)
    with pytest.raises(ValueError, match=r"x: expected a length <= 16 \(the configured "
                                         r"maximum, lookback\)"):
        model(torch.randn(1, 17, 2))
    with pytest.raises(ValueError, match=r"x: expected a window of at least one time step"):
        model(torch.randn(1, 0, 2))
    assert model(torch.randn(0, 16, 2)).forecast.shape == (0, 4, 2)     # an empty batch
    with pytest.raises(ValueError, match=r"x: expected shape"):
        model(torch.randn(1, 16, 3))
    out = model(torch.randn(3, 16, 2))
    with pytest.raises(ValueError, match=r"y: expected shape"):
        model.loss(out, torch.randn(3, 16, 2), torch.randn(3, 5, 2))
    with pytest.raises(ValueError, match="preprocess"):
        SpaceTime(2, 16, 4, preprocess=("log",))
    with pytest.raises(ValueError, match="loss_weights"):
        SpaceTime(2, 16, 4, loss_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"d_model: expected a multiple of d_input=3 with "
                                         r"embedding='repeat'.*got 128; use embedding='linear'"):
        SpaceTime(3, 16, 4)
    assert SpaceTime(3, 16, 4, embedding="linear").encoder.embed.out_features == 128
    with pytest.raises(ValueError, match=r"n_heads: expected a divisor of d_model=12"):
        SpaceTime(1, 16, 4, d_model=12, n_heads=8)
    with pytest.raises(ValueError, match="embedding"):
        SpaceTime(1, 16, 4, embedding="conv")
    with pytest.raises(ValueError, match="n_layers"):
        SpaceTime(1, 16, 4, n_layers=0)


EMPTY_CASES = {**LAYERS, "spacetime-encoder": lambda: SpaceTimeEncoder(4, 8, 4, 2, 16,
                                                                       ("diff1",), 0)}


@pytest.mark.parametrize("name", sorted(EMPTY_CASES))
@pytest.mark.parametrize("shape", [(2, 0, 4), (0, 5, 4)], ids=["length-0", "batch-0"])
def test_empty_inputs_give_empty_outputs_and_keep_the_state(name, shape):
    layer = EMPTY_CASES[name]()
    _, state = layer(torch.randn(shape[0], 3, 4))
    with torch.no_grad():
        y, same = layer(torch.randn(shape), state)
    assert y.shape == (*shape[:2], layer(torch.randn(1, 1, 4))[0].shape[-1])
    for (_, got), (_, want) in zip(same.named_tensors(), state.named_tensors(), strict=True):
        torch.testing.assert_close(got, want)


def test_language_model_on_empty_prompts():
    lm = MambaLM(16, 2, d_state=4, random_state=0)
    assert lm.run(input_ids=torch.zeros(2, 0, dtype=torch.long)).logits.shape == (2, 0, 264)
    assert lm.step(torch.zeros(0, dtype=torch.long), lm.init_state(0))[0].shape == (0, 264)
    with pytest.raises(TypeError, match=r"state: expected an LMState"):
        lm.step(torch.zeros(2, dtype=torch.long), None)


def test_mamba_dtype_is_the_parameters_dtype():
    block = Mamba(8, 4, random_state=0)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32 .*got torch.float64"):
        block(x)
    with pytest.raises(TypeError, match=r"x_t: expected dtype torch.float32"):
        block.step(x[:, 0], block.init_state(2))
    block = block.double()
    y, state = block(x)
    step_state = block.init_state(2)
    for t in range(6):
        y_t, step_state = block.step(x[:, t], step_state)
        torch.testing.assert_close(y_t, y[:, t], rtol=1e-12, atol=1e-12)
    assert state.ssm.dtype == step_state.ssm.dtype == torch.float64
    lm = MambaLM(16, 1, d_state=4)
    with pytest.raises(TypeError, match=r"inputs_embeds: expected dtype torch.float32"):
        lm.run(inputs_embeds=torch.zeros(1, 3, 16, dtype=torch.float64))


def test_language_model_checks_states_it_did_not_issue():
    import pickle

    lm, other = MambaLM(16, 2, d_state=4, random_state=0), MambaLM(16, 2, d_state=8)
    ids = torch.zeros(2, dtype=torch.long)
    _, state = lm.step(ids, lm.init_state(2))
    _, state = lm.step(ids, state)                         # the issued state: no re-check
    with pytest.raises(ValueError, match=r"state\.ssm: expected shape .* different model"):
        lm.step(ids, other.init_state(2))
    with pytest.raises(ValueError, match=r"different batch size"):
        lm.step(torch.zeros(3, dtype=torch.long), state)
    clone = pickle.loads(pickle.dumps(lm))
    torch.testing.assert_close(clone.step(ids, state)[0], lm.step(ids, state)[0])

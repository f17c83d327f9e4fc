"""SpaceTime, Mamba, S4 and S4D backbones of the neural forecaster (need seqprob.ssm)."""

import numpy as np
import pytest
import torch

pytest.importorskip("seqprob.ssm")

from seqprob.forecasting import Naive, NeuralForecaster
from seqprob.forecasting import metrics as M
from seqprob.forecasting.backbones import SSM_BACKBONE_NAMES, backbone_class

SMALL = {"spacetime": {"d_model": 6, "d_state": 8, "n_heads": 2, "dropout": 0.0,
                       "preprocess": ("diff0", "diff1", "ma3")},
         "mamba": {"d_model": 8, "d_state": 4, "n_layers": 1},
         "s4": {"d_model": 8, "d_state": 8, "n_layers": 1},
         "s4d": {"d_model": 8, "d_state": 8, "n_layers": 1}}


def seasonal(n=400, m=12):
    t = np.arange(n)
    rng = np.random.default_rng(0)
    return 5 + 2 * np.sin(2 * np.pi * t / m) + 0.2 * rng.standard_normal(n)


@pytest.mark.parametrize("name", SSM_BACKBONE_NAMES)
def test_ssm_backbone_contract_shapes(name):
    net = backbone_class(name)(24, 7, 3, 2, **SMALL[name])
    out = net(torch.randn(4, 24, 3))
    assert out.shape == (4, 7, 3, 2)
    out.sum().backward()


def test_spacetime_adds_its_next_step_losses():
    net = backbone_class("spacetime")(24, 7, 1, 1, **SMALL["spacetime"])
    x = torch.randn(4, 24, 1)
    out, aux = net.forward_with_loss(x)
    torch.testing.assert_close(out, net(x))
    assert aux.dim() == 0 and aux.item() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", SSM_BACKBONE_NAMES)
def test_ssm_forecasters_learn_a_seasonal_signal(name, tmp_path):
    y = seasonal()
    model = NeuralForecaster(name, backbone_kwargs=SMALL[name], lookback=36, output_length=12,
                             max_epochs=4, batch_size=32, learning_rate=3e-3,
                             verbose=False).fit(y[:388])
    assert M.mse(y[388:], model.predict(12)) < M.mse(y[388:], Naive().fit(y[:388]).predict(12))
    loaded = NeuralForecaster.load(model.save(tmp_path / "m.safetensors"))
    np.testing.assert_allclose(loaded.predict(12), model.predict(12), rtol=1e-5, atol=1e-6)

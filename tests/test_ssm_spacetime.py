"""SpaceTime: preprocessing kernels, the closed-loop decoder against an explicit rollout, the
loss, persistence, and the paper's AR(p) expressivity claim."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqprob.core import load
from seqprob.ssm import S4D, SpaceTime
from seqprob.ssm.conv_kernels import companion_matrix
from seqprob.ssm.spacetime import preprocessing_taps


def test_preprocessing_taps():
    torch.testing.assert_close(preprocessing_taps("diff1"), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(preprocessing_taps("diff2"), torch.tensor([1.0, -2.0, 1.0]))
    torch.testing.assert_close(preprocessing_taps("ma3"), torch.tensor([2.0, -1.0, -1.0]) / 3)


@torch.no_grad()
def test_preprocessing_ssm_computes_differences_and_ma_residuals():
    model = SpaceTime(1, 20, 2, d_model=4, d_state=4, n_layers=0, preprocess=("diff1", "ma3"),
                      random_state=0)
    x = torch.randn(1, 20, 1, dtype=torch.float64).float()
    y, _ = model.encoder.preprocess(x.repeat(1, 1, 2))
    xs = torch.cat([torch.zeros(2), x[0, :, 0]])            # zero history before the window
    diff = xs[2:] - xs[1:-1]
    ma_res = xs[2:] - (xs[2:] + xs[1:-1] + xs[:-2]) / 3
    torch.testing.assert_close(y[0, :, 0], diff, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[0, :, 1], ma_res, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_closed_loop_decoder_equals_explicit_rollout():
    model = SpaceTime(2, 12, 7, d_model=3, d_state=5, n_layers=1, random_state=0).double()
    x = torch.randn(2, 12, 2, dtype=torch.float64)
    out = model(x)
    dec = model.decoder.ssm
    a, b = companion_matrix(dec.a), dec.b
    c, k = dec.unfold(torch.stack([dec.c_tilde, model.decoder.k_tilde]))
    state = torch.zeros(2, 3, 5, dtype=torch.float64)
    opens, inputs = [], []
    for t in range(12):
        state = (a @ state[..., None])[..., 0] + b * out.encoded[:, t, :, None]
        opens.append((c * state).sum(-1))
        inputs.append((k * state).sum(-1))
    forecast = []
    for _ in range(7):
        forecast.append((c * state).sum(-1))
        u_hat = (k * state).sum(-1)                      # the decoder's own next input
        state = (a @ state[..., None])[..., 0] + b * u_hat[..., None]
    torch.testing.assert_close(out.next_step, model.head(torch.stack(opens, 1)))
    torch.testing.assert_close(out.input_pred, torch.stack(inputs, 1))
    torch.testing.assert_close(out.forecast, model.head(torch.stack(forecast, 1)))


def test_loss_parts_and_gradients(tmp_path):
    model = SpaceTime(2, 10, 3, d_model=4, d_state=4, n_layers=1, loss_weights=(1.0, 0.5, 0.25),
                      random_state=0)
    x, y = torch.randn(3, 10, 2), torch.randn(3, 3, 2)
    out = model(x)
    parts = model.loss(out, x, y)
    torch.testing.assert_close(parts["horizon"], ((out.forecast - y) ** 2).mean())
    torch.testing.assert_close(parts["next_step"], ((out.next_step[:, :-1] - x[:, 1:]) ** 2).mean())
    torch.testing.assert_close(parts["next_input"],
                               ((out.input_pred[:, :-1] - out.encoded[:, 1:]) ** 2).mean())
    torch.testing.assert_close(parts["total"], parts["horizon"] + 0.5 * parts["next_step"]
                               + 0.25 * parts["next_input"])
    parts["total"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)
    model.save(tmp_path / "st.safetensors")
    again = load(tmp_path / "st.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again(x).forecast, model(x).forecast)


def _ar_series(phi, n, generator):
    p = len(phi)
    noise = torch.randn(n + 200, generator=generator, dtype=torch.float64)
    x = torch.zeros(n + 200, dtype=torch.float64)
    for t in range(p, n + 200):
        x[t] = sum(phi[i] * x[t - 1 - i] for i in range(p)) + noise[t]
    return x[200:].float()


def _fit(model, windows, predict, steps, generator):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        batch = windows[torch.randint(0, len(windows), (64,), generator=generator)]
        loss = predict(model, batch, train=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


AR = {1: [0.8], 2: [1.2, -0.5], 3: [0.5, -0.3, 0.3], 4: [0.6, -0.4, 0.3, -0.2]}
LOOKBACK, HORIZON = 32, 4


def _spacetime_step(model, batch, train):
    out = model(batch[:, :LOOKBACK])
    if train:
        return model.loss(out, batch[:, :LOOKBACK], batch[:, LOOKBACK:])["total"]
    return F.mse_loss(out.forecast[:, 0], batch[:, LOOKBACK])


class _S4DForecaster(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(1, 16)
        self.ssm = S4D(16, 16, random_state=0)
        self.head = torch.nn.Linear(16, 1)

    def forward(self, x):
        return self.head(self.ssm(self.embed(x))[0])


def _s4d_step(model, batch, train):
    pred = model(batch[:, :LOOKBACK])                       # predicts position t + 1
    if train:
        return F.mse_loss(pred, batch[:, 1:LOOKBACK + 1])
    return F.mse_loss(pred[:, -1], batch[:, LOOKBACK])


@pytest.mark.slow
@pytest.mark.parametrize("p", [1, 2, 3, 4])
def test_spacetime_reaches_the_ar_noise_floor(p, one_thread):
    """One-step MSE on held-out AR(p) windows (noise variance 1) within 10% of the floor.

    Measured on the shared 2-core machine (200 Adam steps each, same data and budget):
    SpaceTime one-step MSE 0.984 / 0.989 / 1.047 / 1.044 for p = 1 / 2 / 3 / 4; an S4D layer
    (16 channels, N = 16) between linear maps reaches 0.983 / 1.078 / 1.110 / 1.160 —
    near the floor on AR(1), above it as p grows. The test asserts SpaceTime's bound and
    prints S4D's figure (run with -s).
    """
    gen = torch.Generator().manual_seed(p)
    series = _ar_series(AR[p], 8000, gen)
    windows = series.unfold(0, LOOKBACK + HORIZON, 1)[:, :, None]        # (n, L + H, 1)
    train, test = windows[:6000], windows[6100:]
    torch.manual_seed(0)
    model = SpaceTime(1, LOOKBACK, HORIZON, d_model=8, d_state=8, n_layers=1, random_state=0)
    _fit(model, train, _spacetime_step, 200, gen)
    s4d = _S4DForecaster()
    _fit(s4d, train, _s4d_step, 200, gen)
    with torch.no_grad():
        err = _spacetime_step(model, test, train=False).item()
        err_s4d = _s4d_step(s4d, test, train=False).item()
    print(f"AR({p}): SpaceTime one-step MSE {err:.3f}, S4D {err_s4d:.3f}, floor 1.0")
    assert err <= 1.1

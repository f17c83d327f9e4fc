"""SpaceTime: preprocessing kernels, the closed-loop decoder against an explicit rollout, the
loss, persistence, and the paper's AR(p) expressivity claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqprob.core import load
from seqprob.core.persist import save_checkpoint
from seqprob.ssm import S4D, CompanionSSM, SpaceTime
from seqprob.ssm.conv_kernels import companion_matrix
from seqprob.ssm.lti import impulse_response
from seqprob.ssm.spacetime import MaskDropout, preprocessing_taps


def test_preprocessing_taps():
    torch.testing.assert_close(preprocessing_taps("diff0"), torch.tensor([1.0]))
    torch.testing.assert_close(preprocessing_taps("diff1"), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(preprocessing_taps("diff3"), torch.tensor([1.0, -3.0, 3.0, -1.0]))
    torch.testing.assert_close(preprocessing_taps("ma3"), torch.tensor([2.0, -1.0, -1.0]) / 3)


@torch.no_grad()
def test_preprocessing_ssms_compute_numpy_differences_and_ma_residuals():
    kinds = ("diff0", "diff1", "diff2", "diff3", "ma3", "ma5")
    model = SpaceTime(1, 20, 2, d_model=12, d_state=4, n_heads=1, preprocess=kinds,
                      random_state=0)
    x = torch.randn(2, 20, 1)
    z = model.encoder.blocks[0].pre(model.encoder.embed(x))[0]                # (2 20 12)
    xs = np.concatenate([np.zeros((2, 4)), x[..., 0].numpy()], 1)   # zero history before
    want = [np.diff(xs, n=k, axis=1)[:, -20:] for k in range(4)]
    for w in (3, 5):
        ma = np.stack([xs[:, t - w + 1: t + 1].mean(1) for t in range(4, 24)], 1)
        want.append(xs[:, 4:] - ma)
    for c in range(12):                       # channel c is filtered by kinds[c % 6]
        np.testing.assert_allclose(z[..., c].numpy(), want[c % 6], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_repeat_embedding_tiles_the_input():
    model = SpaceTime(2, 8, 3, d_model=6, d_state=4, n_heads=3, random_state=0)
    x = torch.randn(1, 8, 2)
    torch.testing.assert_close(model.encoder.embed(x), torch.cat([x, x, x], -1))


@torch.no_grad()
def test_heads_share_one_companion_kernel_equal_to_the_recurrence():
    layer = CompanionSSM(6, 5, l_max=12, n_heads=3, random_state=0).double()
    kernel = layer.kernel(12)                                                  # (6 12)
    torch.testing.assert_close(kernel[:3], kernel[:1].expand(3, 12))
    assert not torch.allclose(kernel[0], kernel[3])
    trans, b, c = layer.kernel.recurrence()
    torch.testing.assert_close(kernel, impulse_response(trans, b, c, 12), rtol=1e-7, atol=1e-9)
    assert layer.kernel.a_raw.shape == (2, 5)


@torch.no_grad()
def test_normalized_companion_is_stable_even_with_unit_circle_eigenvalues():
    layer = CompanionSSM(2, 4, l_max=10, random_state=0).double()
    layer.kernel.a_raw.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 1.0, -1.0]]))
    a = layer.kernel.a                      # L1-normalized: eigenvalues 1 and -1 before rho
    radius = torch.linalg.eigvals(companion_matrix(a)).abs().amax(-1)
    torch.testing.assert_close(radius, torch.full((2,), 0.5 ** 0.1, dtype=torch.float64))
    trans, b, c = layer.kernel.recurrence()
    torch.testing.assert_close(layer.kernel(10), impulse_response(trans, b, c, 10))


@pytest.mark.parametrize(("lookback", "length", "d_state"), [(12, 12, 5), (12, 9, 5), (4, 3, 6)])
@torch.no_grad()
def test_closed_loop_decoder_equals_explicit_rollout(lookback, length, d_state):
    model = SpaceTime(2, lookback, 7, d_model=4, d_state=d_state, n_heads=2,
                      random_state=0).double().eval()
    x = torch.randn(2, length, 2, dtype=torch.float64)
    out = model(x)
    a, b, c, k = model.decoder.system()
    a = companion_matrix(a)
    state = torch.zeros(2, 4, d_state, dtype=torch.float64)
    opens, inputs = [], []
    for t in range(length):
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
    model = SpaceTime(2, 10, 3, d_model=4, d_state=4, n_layers=2, n_heads=2,
                      loss_weights=(1.0, 0.5, 0.25), random_state=0)
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
        torch.testing.assert_close(again.eval()(x).forecast, model.eval()(x).forecast)


def test_a_checkpoint_of_the_simplified_spacetime_is_refused_by_name(tmp_path):
    old = {k: v for k, v in SpaceTime(1, 8, 2, d_model=4, d_state=4, n_heads=1).get_config(
    ).items() if k not in ("embedding", "n_heads", "dropout")}
    path = save_checkpoint(tmp_path / "old.safetensors", {"w": torch.zeros(1)},
                           kind="seqprob.ssm.spacetime.SpaceTime", config=old)
    with pytest.raises(ValueError, match="before the published architecture"):
        load(path)


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
    the published architecture at width 16, two heads, no dropout: one-step MSE 1.043 /
    1.060 / 1.079 / 1.085 for p = 1 / 2 / 3 / 4 (width 8, one head: 1.078 / 1.233 / 1.187
    / 1.202). The simplified model seqprob had before (preprocessing concatenated to the
    raw input, a linear embedding and head, unnormalized decoder) reached 0.984 / 0.989 /
    1.047 / 1.044 at width 8 — this small test favours it; CHANGELOG and BENCHMARKS say why
    it was not kept. An S4D layer (16 channels, N = 16) between linear maps reaches 0.983 /
    1.078 / 1.110 / 1.160. The test asserts SpaceTime's bound and prints S4D's (run with -s).
    """
    gen = torch.Generator().manual_seed(p)
    series = _ar_series(AR[p], 8000, gen)
    windows = series.unfold(0, LOOKBACK + HORIZON, 1)[:, :, None]        # (n, L + H, 1)
    train, test = windows[:6000], windows[6100:]
    torch.manual_seed(0)
    model = SpaceTime(1, LOOKBACK, HORIZON, d_model=16, d_state=8, n_heads=2, dropout=0.0,
                      random_state=0)
    _fit(model, train, _spacetime_step, 200, gen)
    s4d = _S4DForecaster()
    _fit(s4d, train, _s4d_step, 200, gen)
    with torch.no_grad():
        err = _spacetime_step(model.eval(), test, train=False).item()
        err_s4d = _s4d_step(s4d, test, train=False).item()
    print(f"AR({p}): SpaceTime one-step MSE {err:.3f}, S4D {err_s4d:.3f}, floor 1.0")
    assert err <= 1.1


def test_mask_dropout_matches_inverted_dropout():
    drop = MaskDropout(0.25)
    x = torch.ones(200_000)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.25) < 0.005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    torch.testing.assert_close(drop.eval()(x), x)

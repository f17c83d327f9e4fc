"""AutoTimes: forecaster API, frozen LLM, rollout, timestamps, in-context, persistence, errors."""

from __future__ import annotations

import typing
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from seqprob.forecasting.autotimes import AutoTimesForecaster
from seqprob.forecasting.autotimes_net import AutoTimesNet
from seqprob.forecasting.series import as_series
from seqprob.forecasting.timestamps import embed_texts, segment_texts, timestamp_embeddings
from seqprob.forecasting.training import BudgetWarning
from seqprob.lm import tiny_lm

S = 8


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # On a shared 2-core machine one torch thread trains the tiny model ~10x faster.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(random_state=0)


def _sines(n: int = 240, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return np.sin(2 * np.pi * t / np.array([16, 24][:channels])) + 0.05 * rng.standard_normal(
        (n, channels))


def _model(lm, **kw) -> AutoTimesForecaster:
    params = {"segment_length": S, "lookback": 4 * S, "max_epochs": 2, "batch_size": 32,
              "projector_hidden": 32, "verbose": False, **kw}
    return AutoTimesForecaster(lm, **params)


@pytest.fixture(scope="module")
def fitted(lm):
    y = _sines()
    return _model(lm, max_epochs=4, learning_rate=3e-3).fit(y[:200], y_val=y[200 - 4 * S:])


def test_fit_freezes_the_llm_and_reports_the_trainable_fraction(fitted, lm):
    assert all(not p.requires_grad for p in lm.parameters())
    net = fitted.network_
    trainable = sum(p.numel() for p in net.projector_parameters())
    total = trainable + sum(p.numel() for p in lm.parameters())
    assert fitted.trainable_fraction_ == pytest.approx(trainable / total)
    assert 0 < fitted.trainable_fraction_ < 1


def test_network_matches_transformers_and_trains_only_the_projectors(lm):
    net = AutoTimesNet(lm, S, projector_hidden=16)
    x = torch.randn(2, 3, S)
    y, _ = net(x)
    with torch.no_grad():  # oracle: the wrapped transformers model on the same embeddings
        hidden = lm.model(inputs_embeds=net.encoder(x), output_hidden_states=True)
        want = net.decoder(hidden.hidden_states[-1])
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-5)
    y.square().sum().backward()  # gradients pass through the frozen LLM to the in-projector
    assert all(p.grad is None for p in lm.parameters())
    assert net.encoder[0].weight.grad.abs().sum() > 0


def test_training_lowers_the_next_segment_error(fitted, lm):
    y = _sines()
    untrained = _model(lm, max_steps=1, learning_rate=1e-9).fit(y[:200])
    contexts = np.stack([y[i: i + 4 * S] for i in range(160, 200)])
    truth = np.stack([y[i + 4 * S: i + 5 * S] for i in range(160, 200)])
    err = [np.mean((m.predict_windows(contexts, S) - truth) ** 2) for m in (untrained, fitted)]
    assert err[1] < 0.5 * err[0]
    assert fitted.best_val_mse_ < fitted.history_[0]["train_loss"]


def test_val_every_records_a_learning_curve_and_keeps_the_best_projectors(lm):
    y = _sines()
    model = _model(lm, max_steps=7, batch_size=8, val_every=3, learning_rate=3e-2)
    model.fit(y[:200], y_val=y[200 - 4 * S:])
    assert [h["step"] for h in model.history_] == [3, 6, 7]  # every 3 steps and the last
    assert model.best_val_mse_ == min(h["val_mse"] for h in model.history_)
    valid = model._windows(as_series(y[200 - 4 * S:]), "y_val")  # oracle: rescore what was kept
    assert model._validate(valid) == pytest.approx(model.best_val_mse_, rel=1e-5)
    with pytest.raises(ValueError, match="val_every"):
        _model(lm, max_steps=2, val_every=0).fit(y[:200])


def test_rollout_on_the_kv_cache_equals_recomputing_the_whole_sequence(fitted):
    # Oracle: feed the context plus the predicted segments through forward without a cache.
    y = _sines()[:200]
    pred = fitted.predict(3 * S)
    z = fitted.scaler_.transform(y[-4 * S:])
    x = torch.as_tensor(np.concatenate([z, fitted.scaler_.transform(pred)])[:, 0],
                        dtype=torch.float32)
    mean, std = x[: 4 * S].mean(), torch.sqrt(x[: 4 * S].var(unbiased=False) + 1e-5)
    segs = ((x - mean) / std).reshape(1, -1, S)[:, :6]
    with torch.no_grad():
        out, _ = fitted.network_(segs)
    whole = (out[0, 3:] * std + mean).reshape(-1).double().numpy()
    want = fitted.scaler_.inverse_transform(
        np.stack([whole, np.zeros_like(whole)], 1))[:, 0]
    np.testing.assert_allclose(pred[:, 0], want, rtol=1e-4, atol=1e-4)


def test_one_model_for_all_horizons_trims_the_overshoot(fitted):
    long = fitted.predict(3 * S + 5)
    assert long.shape == (3 * S + 5, 2)
    for h in (1, S - 1, S, 2 * S + 3):
        np.testing.assert_allclose(fitted.predict(h), long[:h], rtol=1e-5, atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(scale=st.floats(0.1, 10.0), shift=st.floats(-50.0, 50.0))
def test_instance_normalization_makes_forecasts_affine_equivariant(fitted, scale, shift):
    contexts = _sines()[None, 100: 100 + 4 * S]
    base = fitted.predict_windows(contexts, 2 * S)
    moved = fitted.predict_windows(contexts * scale + shift, 2 * S)
    np.testing.assert_allclose(moved, base * scale + shift, rtol=1e-3,
                               atol=1e-3 * max(scale, abs(shift)))


def test_backtest_conditions_on_each_longer_history(lm):
    y = _sines()
    model = _model(lm, max_steps=2)
    result = model.backtest(y, start=200, horizon=S, stride=16)
    fitted = _model(lm, max_steps=2).fit(y[:200])
    want = fitted.predict_windows(np.stack([y[t - 4 * S: t] for t in (200, 216, 232)]), S)
    np.testing.assert_allclose(result.predictions, want, rtol=1e-5, atol=1e-6)


def test_shorter_contexts_use_their_whole_segments(fitted):
    y = _sines()
    ragged = fitted.predict_windows(y[None, 100: 100 + 2 * S + 3], S)
    aligned = fitted.predict_windows(y[None, 103: 103 + 2 * S], S)
    np.testing.assert_allclose(ragged, aligned)


def test_without_the_llm_uses_the_same_projectors():
    y = _sines()
    with pytest.raises(ValueError, match="width"):
        _model(None).fit(y)
    model = _model(None, width=32).fit(y)
    assert model.network_.lm is None and model.trainable_fraction_ == 1.0
    assert model.predict(2 * S).shape == (2 * S, 2)


# ---- in-context forecasting -----------------------------------------------------------
def _alternating(rng: np.random.Generator, reps: int, channels: int):
    a, b = rng.standard_normal((2, S, channels))
    noise = 0.05 * rng.standard_normal((2 * S * reps, channels))
    return np.concatenate([a, b] * reps) + noise, a


def test_a_useful_prompt_lowers_the_error_where_the_lookback_lacks_the_information(lm):
    # Each series alternates two random segments A, B. A context of only the last segment B
    # says nothing about the next segment A; a prompt holding the preceding A does.
    rng = np.random.default_rng(0)
    channels = 8
    train = np.concatenate([_alternating(rng, 4, channels)[0] for _ in range(6)])
    model = _model(lm, lookback=2 * S, max_epochs=50, max_steps=300, batch_size=64,
                   learning_rate=1e-2, projector_hidden=64).fit(train)
    series, first = zip(*[_alternating(rng, 2, channels) for _ in range(16)], strict=True)
    lookback = np.stack([s[-S:] for s in series])          # B
    prompt = np.stack([s[-2 * S: -S] for s in series])     # the A before it
    truth = np.stack(first)                                 # the next segment is A

    def mse(**kw):
        return np.mean((model.predict_windows(lookback, S, **kw) - truth) ** 2)

    alone, useful, useless = mse(), mse(prompt=prompt), mse(prompt=np.roll(prompt, 1, axis=0))
    assert useful < 0.6 * alone
    assert useful < 0.6 * useless


def test_a_prompt_is_prepended_to_the_lookback(fitted):
    y = _sines()
    joined = fitted.predict_windows(y[None, 100: 100 + 4 * S], S)
    prompted = fitted.predict_windows(y[None, 100 + S: 100 + 4 * S], S,
                                      prompt=y[100: 100 + S])
    np.testing.assert_allclose(prompted, joined, rtol=1e-5, atol=1e-6)
    assert fitted.predict(S, prompt=y[:2 * S]).shape == (S, 2)


def test_bad_prompts_are_refused(fitted):
    y = _sines()
    with pytest.raises(ValueError, match="prompt: expected .* multiple of segment_length=8"):
        fitted.predict(S, prompt=y[:S + 1])
    with pytest.raises(ValueError, match="prompt"):
        fitted.predict(S, prompt=y[:S, :1])


# ---- timestamps ---------------------------------------------------------------------------
def _frame(n: int = 200) -> pd.DataFrame:
    index = pd.date_range("2021-03-01", periods=n, freq="h", name="time")
    return pd.DataFrame(_sines(n), index=index, columns=["a", "b"])


def test_timestamp_texts_and_embeddings_match_one_text_at_a_time(lm, tmp_path):
    index = pd.date_range("2021-03-01 22:00", periods=S + 2, freq="h")
    texts = segment_texts(index, S)
    assert texts[0] == "This is Time Series from 2021-03-01 22:00:00 to 2021-03-02 05:00:00"
    table = timestamp_embeddings(lm, index, S, cache_dir=tmp_path, verbose=False)
    assert table.shape == (3, lm.hidden_size)
    for i, text in enumerate(texts):  # left padding in a batch must not change a text's state
        with torch.no_grad():
            ids = torch.tensor([lm.tokenizer.encode(text)])
            want = lm.run(input_ids=ids).hidden[0, -1]
        torch.testing.assert_close(table[i], want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(embed_texts(lm, texts[:1], verbose=False)[0], table[0])


def test_timestamp_embeddings_are_cached_on_disk(lm, tmp_path):
    index = pd.date_range("2021-03-01", periods=3 * S, freq="h")
    first = timestamp_embeddings(lm, index, S, cache_dir=tmp_path, verbose=False)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    with safe_open(str(files[0]), framework="pt") as fh:  # the cache is what is read back
        fh.get_tensor("embeddings").mul_(0)
    torch.testing.assert_close(timestamp_embeddings(lm, index, S, cache_dir=tmp_path), first)
    timestamp_embeddings(lm, index, S + 1, cache_dir=tmp_path, verbose=False)
    timestamp_embeddings(lm, index + pd.Timedelta("1h"), S, cache_dir=tmp_path, verbose=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_timestamps_mix_into_fit_and_forecast(lm, tmp_path):
    frame = _frame()
    model = _model(lm, timestamps=True, cache_dir=str(tmp_path)).fit(frame)
    assert model.network_.mark_scale is not None
    forecast = model.predict(2 * S)
    assert isinstance(forecast, pd.DataFrame)
    assert forecast.index[0] == frame.index[-1] + pd.Timedelta("1h")
    contexts = frame.to_numpy()[None, -4 * S:]
    windows = model.predict_windows(contexts, 2 * S, start_times=frame.index[-4 * S:][:1])
    np.testing.assert_allclose(windows[0], forecast.to_numpy(), rtol=1e-5, atol=1e-6)


def test_missing_timestamps_are_a_clear_error(lm, tmp_path):
    with pytest.raises(ValueError, match="timestamps=True needs time stamps"):
        _model(lm, timestamps=True, cache_dir=str(tmp_path)).fit(_sines())
    model = _model(lm, timestamps=True, cache_dir=str(tmp_path)).fit(_frame())
    with pytest.raises(ValueError, match="start_times: .* got None"):
        model.predict_windows(_sines()[None, :4 * S], S)
    with pytest.raises(ValueError, match="timestamps: .* lm=None"):
        _model(None, width=16, timestamps=True).fit(_frame())


# ---- persistence and bad input --------------------------------------------------------------
def test_checkpoints_hold_only_the_projectors(fitted, lm, tmp_path):
    path = fitted.save(tmp_path / "autotimes.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        names = list(fh.keys())
    assert names and not any(".lm." in n for n in names)
    with pytest.raises(ValueError, match="pass lm=<that model>"):
        AutoTimesForecaster.load(path)
    loaded = AutoTimesForecaster.load(path, lm=lm)
    np.testing.assert_allclose(loaded.predict(2 * S), fitted.predict(2 * S), rtol=1e-6)
    assert loaded.trainable_fraction_ == fitted.trainable_fraction_


def test_loading_with_an_llm_of_another_hidden_size_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "autotimes.safetensors")
    other = tiny_lm(hidden_size=48, num_heads=4)
    with pytest.raises(ValueError, match="width 32 .* hidden size 48"):
        AutoTimesForecaster.load(path, lm=other)


@pytest.mark.parametrize(("params", "match"), [
    ({"lookback": 4 * S + 3}, "lookback: expected a multiple of segment_length=8"),
    ({"lookback": 4}, "lookback"),
    ({"projector": "conv"}, "projector"),
    ({"segment_length": 0}, "segment_length"),
])
def test_bad_parameters_are_refused(lm, params, match):
    with pytest.raises(ValueError, match=match):
        _model(lm, **params).fit(_sines())


def test_bad_llm_and_short_series_are_refused():
    with pytest.raises(TypeError, match="lm: expected a seqprob LanguageModel"):
        _model(42).fit(_sines())
    with pytest.raises(ValueError, match="needs a series of at least 40 time steps, got 32"):
        _model(None, width=8).fit(_sines()[:4 * S])


@pytest.mark.slow
def test_smollm2_backbone_trains_and_forecasts():
    from seqprob.lm import load

    lm = load("smollm2-135m")
    y = _sines(400)
    model = AutoTimesForecaster(lm, segment_length=24, lookback=96, max_steps=6,
                                batch_size=8, verbose=False).fit(y)
    assert model.trainable_fraction_ < 0.01
    assert all(not p.requires_grad for p in lm.parameters())
    assert np.isfinite(model.predict(60)).all()


def test_forecast_cli_runs_autotimes(lm, tmp_path):
    from seqprob.cli import main

    folder = tmp_path / "tiny-llama"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    source, out = tmp_path / "series.csv", tmp_path / "forecast.csv"
    _frame().reset_index().to_csv(source, index=False)
    code = main(["forecast", str(source), "--model", "autotimes", "--lm", str(folder),
                 "--segment-length", str(S), "--lookback", str(4 * S), "--horizon", "20",
                 "--epochs", "1", "--max-steps", "3", "--quiet", "--output", str(out)])
    assert code == 0
    forecast = pd.read_csv(out, index_col="time", parse_dates=True)
    assert forecast.shape == (20, 2)
    assert forecast.index[0] == _frame().index[-1] + pd.Timedelta("1h")
    assert main(["forecast", str(source), "--model", "autotimes", "--lm", str(folder),
                 "--segment-length", str(S), "--lookback", str(4 * S + 1)]) == 2


def test_evaluate_ett_horizons_matches_evaluate_ett_per_horizon():
    from seqprob.forecasting import Naive, evaluate_ett, evaluate_ett_horizons

    together = evaluate_ett_horizons("ETTh2", Naive(), 48, [24, 96], target="OT", stride=37)
    for h in (24, 96):
        alone = evaluate_ett("ETTh2", Naive(), 48, h, target="OT", stride=37)
        assert together[h]["test_windows"] == alone["test_windows"]
        assert together[h]["mse"] == pytest.approx(alone["mse"], rel=1e-12)
        assert together[h]["mae"] == pytest.approx(alone["mae"], rel=1e-12)


def test_evaluate_ett_horizons_passes_time_stamps_when_asked():
    from seqprob.forecasting import Naive, evaluate_ett_horizons
    from seqprob.forecasting.datasets import ett_frame

    class Stamped(Naive):  # records what the protocol hands a timestamp-using model
        seen: typing.ClassVar[dict] = {}

        def fit(self, y, X=None, *, y_val=None):
            Stamped.seen.update(train=y.index, val=y_val.index)
            return super().fit(y, X, y_val=y_val)

        def predict_windows(self, contexts, horizon, *, start_times=None):
            Stamped.seen["starts"] = start_times
            return super().predict_windows(contexts, horizon)

    index = ett_frame("ETTh2").index
    stamped = evaluate_ett_horizons("ETTh2", Stamped(), 48, [24], target="OT", stride=500,
                                    timestamps=True)
    plain = evaluate_ett_horizons("ETTh2", Naive(), 48, [24], target="OT", stride=500)
    assert stamped[24]["mse"] == plain[24]["mse"]
    assert Stamped.seen["train"].equals(index[:8640])
    assert Stamped.seen["val"].equals(index[8640 - 48: 11520])
    # window k of the test slice (which begins 48 rows before row 11520) starts at 500 k
    want = index[11520 - 48 + 500 * np.arange(len(Stamped.seen["starts"]))]
    np.testing.assert_array_equal(Stamped.seen["starts"], want.to_numpy())


def test_forecast_cli_caps_autotimes_steps_and_names_the_flag(lm, tmp_path, capsys):
    from seqprob.cli import main

    folder = tmp_path / "tiny-llama"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    source = tmp_path / "series.csv"
    _frame().reset_index().to_csv(source, index=False)
    args = ["forecast", str(source), "--model", "autotimes", "--lm", str(folder),
            "--segment-length", str(S), "--lookback", str(4 * S), "--horizon", "4",
            "--epochs", "1", "--max-steps", "3", "--quiet"]
    with pytest.warns(BudgetWarning, match=r"training stops after 1 steps "
                      r"\(max_seconds=1e-06\); --max-seconds 0 lifts the cap"):
        assert main([*args, "--max-seconds", "1e-6"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        assert main([*args, "--max-seconds", "0"]) == 0


def test_max_seconds_cuts_the_steps_by_the_first_steps_time():
    y = _sines(200)
    with pytest.warns(BudgetWarning, match="took .* s, so 8 steps would take"):
        capped = AutoTimesForecaster(None, width=8, segment_length=S, lookback=4 * S,
                                     max_steps=8, batch_size=4, max_seconds=1e-6,
                                     val_every=1, verbose=False).fit(y, y_val=_sines(80))
    assert [h["step"] for h in capped.history_] == [1]
    full = AutoTimesForecaster(None, width=8, segment_length=S, lookback=4 * S, max_steps=8,
                               batch_size=4, max_seconds=1e6, val_every=1, verbose=False)
    assert [h["step"] for h in full.fit(y, y_val=_sines(80)).history_] == list(range(1, 9))

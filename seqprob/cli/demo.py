"""``seqprob demo``: a short tour of what seqprob does, one section per capability."""

from __future__ import annotations

import functools
import importlib.util
import statistics
import time

import torch
from tqdm import tqdm

from seqprob.cli.table import format_table
from seqprob.core import scan


def _mambapy_runner(u, delta, A, B, C):
    """mambapy's pscan selective scan on (batch, length, dim) copies, or None if not installed."""
    if importlib.util.find_spec("mambapy") is None:
        return None
    from seqprob.kernels.peers import mambapy_selective_scan
    x, dt = u.transpose(1, 2).contiguous(), delta.transpose(1, 2).contiguous()
    Bt, Ct = B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()
    zeros = torch.zeros(u.shape[1])
    return lambda: mambapy_selective_scan(x, dt, A, Bt, Ct, zeros).transpose(1, 2)


def scan_tour(quiet: bool) -> None:
    """Time every available selective-scan backend (and mambapy's pscan) against the reference."""
    batch, dim, length, n = 1, 256, 512, 16
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, dim, length, generator=g)
    delta = torch.rand(batch, dim, length, generator=g) * 0.1
    A = -torch.rand(dim, n, generator=g)
    B = torch.randn(batch, n, length, generator=g)
    C = torch.randn(batch, n, length, generator=g)
    print(f"Selective scan, forward, fp32, batch={batch} dim={dim} length={length} N={n} "
          "(median of 3 runs)")
    runners = {name: functools.partial(scan.selective_scan, u, delta, A, B, C, backend=name)
               for name, ok, _ in scan.backend_status() if ok and name in scan.BACKENDS}
    mambapy = _mambapy_runner(u, delta, A, B, C)
    if mambapy is not None:
        runners["mambapy pscan (peer)"] = mambapy
    outputs, seconds = {}, {}
    with torch.no_grad():
        for name, run in tqdm(runners.items(), desc="scan backends", disable=quiet,
                              leave=False):
            outputs[name] = run()  # warm-up (compilation)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            seconds[name] = statistics.median(times)
    rows = [(name, f"{seconds[name] * 1e3:.1f} ms",
             f"{seconds['reference'] / seconds[name]:.1f}x",
             f"{(outputs[name] - outputs['reference']).abs().max().item():.1e}")
            for name in runners]
    print(format_table(["backend", "time", "speed-up vs reference", "max |diff|"], rows))


def forecasting_tour(quiet: bool) -> None:
    """Train a SpaceTime forecaster on ETTh1's oil temperature (a CPU budget of a few
    minutes, :data:`DEMO_TRAINING`) and backtest it against DLinear and statistical
    baselines; plot its forecast of the first test window."""
    from seqprob.forecasting import NeuralForecaster, ett_frame, plot_forecast

    y = ett_frame("ETTh1")["OT"].iloc[:14400]  # the protocol's train + validation + test rows
    start, horizon, stride = 11520, 96, 336
    common = dict(lookback=336, output_length=horizon, quantiles=(0.1, 0.5, 0.9), verbose=not quiet)
    models = {"SpaceTime": NeuralForecaster("spacetime", **common, **DEMO_TRAINING),
              "DLinear (reference)": NeuralForecaster("dlinear", max_epochs=10, **common),
              **baseline_models()}
    print(f"Forecasting ETTh1 oil temperature (OT, hourly): fit on rows [0, {start}), then "
          f"forecast {horizon} h ahead every {stride} h over the test rows [{start}, 14400)")
    threads = torch.get_num_threads()
    # these models are small: on a busy 2-core machine intra-op threads cost more than they
    # give (measured: 11 s with 1 thread vs 136 s with 2 for a DLinear fit under load)
    torch.set_num_threads(1)
    try:
        rows, backtests = _forecast_rows(models, y, start, horizon, stride, quiet)
    finally:
        torch.set_num_threads(threads)
    rows.sort(key=lambda r: r[1])
    print(format_table(["model", "MSE", "MAE", "MASE", "sMAPE %", "time"], rows))
    fitted = backtests["SpaceTime"].model  # fit once on rows [0, start) by the backtest
    q = fitted.predict_quantiles(horizon, (0.1, 0.9))
    plot_forecast(y.iloc[:start], fitted.predict(horizon), truth=y.iloc[start: start + horizon],
                  lower=q.xs(0.1, level="quantile", axis=1),
                  upper=q.xs(0.9, level="quantile", axis=1), interval_label="80% interval",
                  title=f"ETTh1 OT: SpaceTime forecaster, first {horizon} h of the test rows",
                  path=DEMO_PLOT)
    print(f"plot of the first test window written to {DEMO_PLOT}")


def baseline_models() -> dict:
    """The statistical and naive baselines of the forecasting section."""
    from seqprob.forecasting import ARIMA, ETS, Naive, SeasonalNaive, Theta

    return {"ARIMA(2,1,1)": ARIMA((2, 1, 1)),
            "ETS (damped trend)": ETS(trend="add", damped_trend=True),
            "Theta (24 h season)": Theta(period=24), "seasonal naive (24 h)": SeasonalNaive(24),
            "naive": Naive()}


def _forecast_rows(models, y, start, horizon, stride, quiet) -> tuple[list, dict]:
    rows, backtests = [], {}
    for name, model in tqdm(models.items(), desc="backtests", disable=quiet, leave=False):
        begin = time.perf_counter()
        bt = model.backtest(y, start=start, horizon=horizon, stride=stride, season_length=24)
        score = bt.summary()
        rows.append((name, score["mse"], score["mae"], score["mase"], score["smape"],
                     f"{time.perf_counter() - begin:.1f} s"))
        backtests[name] = bt
    return rows, backtests


# SpaceTime's CPU budget in the demo: at most 12 epochs of 50 random batches of 32 windows,
# early stopping on the last 20% of the training rows (a few minutes on one core). The
# learning rate is the one of {1e-3, 3e-3} with the lower validation MSE (0.099 vs 0.107).
DEMO_TRAINING = dict(backbone_kwargs={"d_model": 32, "d_state": 32}, batch_size=32,
                     learning_rate=1e-3, max_epochs=12, max_batches_per_epoch=50, patience=3)
DEMO_PLOT = "seqprob-demo-forecast.png"


# three CommonGen dev concept sets (Apache-2.0)
CONCEPT_SETS = (("ball", "bunch", "kid", "throw"), ("bathroom", "clipper", "cut", "hair"),
                ("jean", "shirt", "sidewalk", "walk"))


def constrained_tour(quiet: bool) -> None:
    """SmolLM2 asked to use every concept of a set, alone and with HMM-guided decoding (the
    default HMM: distilled in a few minutes on first use, then cached)."""
    from seqprob.control import generate as controlled
    from seqprob.control.defaults import cache_dir, default_hmm
    from seqprob.control.generation import concept_prompt
    from seqprob.control.words import keyword
    from seqprob.lm import generate, load

    lm = load("smollm2-135m")
    print(f"Constrained generation, SmolLM2-135M, greedy, 32 new tokens (HMM cache: "
          f"{cache_dir()})")
    hmm = default_hmm(lm, verbose=not quiet)
    prompts = [concept_prompt(lm, c) for c in CONCEPT_SETS]
    plain = generate(lm, prompts, 32).texts
    guided = controlled(lm, prompts, hmm, keywords=[list(c) for c in CONCEPT_SETS],
                        max_new_tokens=32).texts
    rows = []
    for concepts, p_text, g_text in zip(CONCEPT_SETS, plain, guided, strict=True):
        for name, text in (("LM alone", p_text), ("LM + HMM", g_text)):
            ok = all(keyword(c).accepts_text(text) for c in concepts)
            rows.append((", ".join(concepts) if name == "LM alone" else "", name,
                         " ".join(text.split()), "yes" if ok else "no"))
    print(format_table(["concepts", "decoding", "text", "all concepts"], rows))


SECTIONS = (scan_tour, forecasting_tour, constrained_tour)


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="a short tour of seqprob's capabilities")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    for section in SECTIONS:
        section(args.quiet)
        print()
    return 0

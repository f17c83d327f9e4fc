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
    """ETTh1, all 7 columns z-scored on the training rows, lookback 336, horizon 96 (the
    literature's protocol, :func:`~seqprob.forecasting.evaluate_ett_horizons`): every model is
    fit on the training rows (the neural ones early-stop on the validation rows), then
    forecasts each of the 30 consecutive 96-hour blocks of the test rows from the 336 hours
    before it. Ours (``sparse``, ridge) against DLinear and the statistical baselines; the
    best model's forecast of the first test block is plotted."""
    from seqprob.forecasting import evaluate_ett_horizons

    lookback, horizon = DEMO_LOOKBACK, DEMO_HORIZON
    print(f"Forecasting ETTh1 (7 columns, hourly, z-scored): fit on rows [0, 8640) "
          f"(validation [8640, 11520)), then forecast each {horizon} h block of the test rows "
          f"[11520, 14400) from the {lookback} h before it")
    threads = torch.get_num_threads()
    # these models are small: on a busy 2-core machine intra-op threads cost more than they
    # give (measured: 11 s with 1 thread vs 136 s with 2 for a DLinear fit under load)
    torch.set_num_threads(1)
    rows, fitted = [], {}
    try:
        for name, model in tqdm(demo_models(quiet).items(), desc="forecasters",
                                disable=quiet, leave=False):
            begin = time.perf_counter()
            res = evaluate_ett_horizons("ETTh1", model, lookback, [horizon],
                                        stride=horizon)[horizon]
            rows.append((name, res["mse"], res["mae"], res["test_windows"],
                         f"{time.perf_counter() - begin:.1f} s"))
            fitted[name] = res["model"]
    finally:
        torch.set_num_threads(threads)
    rows.sort(key=lambda r: r[1])
    print(format_table(["model", "MSE", "MAE", "windows", "time"], rows))
    best = rows[0][0]
    if best in OURS:
        print(f"best: {best}, a seqprob model; SpaceTime, S4 and Mamba are left out: under a "
              f"CPU budget they trail DLinear on this task (BENCHMARKS.md)")
    else:
        print(f"best: {best}, a baseline: no seqprob model beat it on this task")
    _plot_first_block(fitted[best], best, lookback, horizon)


def demo_models(quiet: bool) -> dict:
    """Our forecasters (:data:`OURS`), DLinear and the baselines of the forecasting section."""
    from seqprob.forecasting import NeuralForecaster, RidgeForecaster

    common = dict(lookback=DEMO_LOOKBACK, output_length=DEMO_HORIZON, verbose=not quiet)
    return {"sparse (SparseLinear)": NeuralForecaster("sparse", **common, **DEMO_TRAINING),
            "ridge": RidgeForecaster(DEMO_LOOKBACK, DEMO_HORIZON),
            "DLinear (reference)": NeuralForecaster("dlinear", max_epochs=10, **common),
            **baseline_models()}


def baseline_models() -> dict:
    """The statistical and naive baselines of the forecasting section."""
    from seqprob.forecasting import ARIMA, ETS, Naive, SeasonalNaive, Theta

    return {"ARIMA(2,1,1)": ARIMA((2, 1, 1)),
            "ETS (damped trend)": ETS(trend="add", damped_trend=True),
            "Theta (24 h season)": Theta(period=24), "seasonal naive (24 h)": SeasonalNaive(24),
            "naive": Naive()}


def _plot_first_block(model, name: str, lookback: int, horizon: int) -> None:
    """Plot ``model``'s forecast of OT over the first test block, in degrees."""
    import pandas as pd

    from seqprob.forecasting import StandardScaler, ett_frame, ett_split, plot_forecast

    frame = ett_frame("ETTh1").iloc[:14400]
    train, _, test = ett_split(frame.to_numpy(), lookback)
    scaler = StandardScaler().fit(train)
    pred = scaler.inverse_transform(model.predict_windows(scaler.transform(test[None, :lookback]),
                                                          horizon)[0])  # (horizon, 7)
    ot = frame["OT"]
    forecast = pd.Series(pred[:, frame.columns.get_loc("OT")], name="OT",
                         index=frame.index[11520: 11520 + horizon])
    plot_forecast(ot.iloc[:11520], forecast, truth=ot.iloc[11520: 11520 + horizon],
                  title=f"ETTh1 OT: {name}, first {horizon} h of the test rows",
                  path=DEMO_PLOT)
    print(f"plot of the first test block (OT) written to {DEMO_PLOT}")


# The forecasting section's task and our models' training: SparseLinear with the learning
# rate of BENCHMARKS.md's ETTh1 runs, at most 10 epochs, early stopping after 3 without a
# better validation MSE (it stops after 8 here).
DEMO_LOOKBACK, DEMO_HORIZON = 336, 96
DEMO_TRAINING = dict(learning_rate=0.02, max_epochs=10, patience=3)
OURS = ("sparse (SparseLinear)", "ridge")
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

"""Seconds per EM iteration: seqprob vs hmmlearn 0.3.3 at the shapes of TARGETS.md, on the
same data from the same starting parameters, log-likelihoods side by side; plus one EM step
of a K=1024 x V=49,152 categorical HMM (seqprob only), with its peak memory.

    python benchmarks/hmm.py [--iters N] [--repeats 3] [--threads 2,1] [--skip-hmmlearn]

Both libraries run in float64 (hmmlearn's precision); seqprob with the torch thread counts of
--threads (default 2; small per-step products run on one thread, see seqprob.hmm.inference).
"""

from __future__ import annotations

import os

# OpenMP workers sleep between parallel regions instead of spinning: on a shared machine whose
# cores are busy, spinning workers take the core the main thread needs (set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's seqprob

# EM iterations per timed fit (both libraries): enough to amortize set-up, few where
# hmmlearn takes a minute per iteration
SHAPES = [
    dict(name="CategoricalHMM K=64 V=1000, 200 x 100", kind="categorical", k=64, v=1000,
         b=200, t=100, iters=10),
    dict(name="GaussianHMM diag K=16 D=8, 100 x 500", kind="gaussian", k=16, v=8, b=100, t=500,
         iters=10),
    dict(name="CategoricalHMM K=256 V=5000, 200 x 64", kind="categorical", k=256, v=5000,
         b=200, t=64, iters=2),
]


def _data_and_start(shape, rng):
    """Flat X, lengths and starting parameters (dict of hmmlearn attribute names)."""
    k, v, n = shape["k"], shape["v"], shape["b"] * shape["t"]

    def stochastic(*s):
        a = rng.rand(*s) + 0.1
        return a / a.sum(-1, keepdims=True)

    start = dict(startprob_=stochastic(k), transmat_=stochastic(k, k))
    if shape["kind"] == "categorical":
        X = rng.randint(0, v, (n, 1))
        start["emissionprob_"] = stochastic(k, v)
    else:
        X = rng.randn(n, v) + rng.randint(0, 4, (n, 1))
        start |= dict(means_=rng.randn(k, v), covars_=rng.rand(k, v) + 0.5)
    return X, [shape["t"]] * shape["b"], start


def _fit_timed(cls, shape, X, lengths, start, iters):
    kwargs = dict(n_components=shape["k"], n_iter=iters, tol=0.0, init_params="")
    if shape["kind"] == "gaussian":
        kwargs["covariance_type"] = "diag"
    model = cls(**kwargs)
    for name, value in start.items():
        setattr(model, name, value.copy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        began = time.perf_counter()
        model.fit(X, lengths)
        seconds = time.perf_counter() - began
    return seconds / iters, list(model.monitor_.history)


def compare(iters: int | None, repeats: int, threads: list[int], skip_hmmlearn: bool
            ) -> list[dict]:
    from seqprob.hmm import estimators as ours

    rows = []
    for shape in SHAPES:
        X, lengths, start = _data_and_start(shape, np.random.RandomState(0))
        cls = getattr(ours, "CategoricalHMM" if shape["kind"] == "categorical" else
                      "GaussianHMM")
        row = dict(shape=shape["name"], iters=iters or shape["iters"])
        for n in threads:
            torch.set_num_threads(n)
            _fit_timed(cls, shape, X, lengths, start, 1)                    # warm-up
            runs = [_fit_timed(cls, shape, X, lengths, start, row["iters"])
                    for _ in range(repeats)]
            row[f"seqprob_s_{n}"] = statistics.median(r[0] for r in runs)
            row["seqprob_ll"] = runs[0][1]
        if not skip_hmmlearn:
            from hmmlearn import hmm

            theirs = getattr(hmm, cls.__name__)
            row["hmmlearn_s"], row["hmmlearn_ll"] = _fit_timed(theirs, shape, X, lengths, start,
                                                               row["iters"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def large_step(k=1024, v=49_152, b=256, t=32, dtype="float32") -> dict:
    """One EM step of a categorical HMM (run in its own process for a clean peak RSS)."""
    from seqprob.hmm import HMM, em

    g = torch.Generator().manual_seed(0)
    model = HMM(k, "categorical", n_symbols=v, dtype=dtype).requires_grad_(False)
    with torch.no_grad():
        model.log_transmat.copy_(torch.log_softmax(torch.randn(k, k, generator=g), 1))
        model.emission.log_emission.copy_(torch.log_softmax(torch.randn(k, v, generator=g), 1))
    x = torch.randint(0, v, (b, t), generator=g)
    times = []
    for _ in range(2):
        began = time.perf_counter()
        stats = em.expected_statistics(model, x)
        em.maximize(model, stats)
        times.append(time.perf_counter() - began)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return dict(shape=f"CategoricalHMM K={k} V={v}, {b} x {t} ({dtype})",
                seconds=min(times), peak_rss_gb=peak_gb,
                log_likelihood=float(stats.log_likelihood))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None,
                        help="EM iterations per fit (default: 10, 10, 2 by shape)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-hmmlearn", action="store_true")
    parser.add_argument("--large-only", action="store_true")
    parser.add_argument("--threads", default="2",
                        help="comma-separated torch thread counts to time seqprob with")
    args = parser.parse_args()
    threads = [int(n) for n in args.threads.split(",")]
    if args.large_only:
        torch.set_num_threads(threads[0])
        print(json.dumps(large_step()))
        return
    rows = compare(args.iters, args.repeats, threads, args.skip_hmmlearn)
    larges = []
    for n in threads:
        out = subprocess.run([sys.executable, __file__, "--large-only", "--threads", str(n)],
                             capture_output=True, text=True, check=True)
        larges.append(json.loads(out.stdout.strip().splitlines()[-1]))
    head = " | ".join(f"seqprob s/iter ({n} thr)" for n in threads)
    print(f"\n| model and data (EM iterations) | {head} | hmmlearn s/iter | speed-up | "
          "log-likelihood at iterations 1, 2 and last (seqprob / hmmlearn) |")
    print("|---|" + "---|" * len(threads) + "---|---|---|")
    for r in rows:
        theirs = r.get("hmmlearn_s")
        ours = [r[f"seqprob_s_{n}"] for n in threads]
        pairs = list(zip(r["seqprob_ll"], r.get("hmmlearn_ll", []), strict=False))
        lls = "; ".join(f"{a:.2f} / {b:.2f}" for a, b in (pairs[:2] + pairs[-1:]))
        theirs_text = "-" if theirs is None else f"{theirs:.2f}"
        ratio = "-" if theirs is None else " / ".join(f"{theirs / o:.0f}x" for o in ours)
        cells = " | ".join(f"{o:.4f}" for o in ours)
        print(f"| {r['shape']} ({r['iters']}) | {cells} | {theirs_text} | {ratio} | {lls} |")
    cells = " | ".join(f"{g['seconds']:.2f} (peak RSS {g['peak_rss_gb']:.2f} GB)" for g in larges)
    print(f"| {larges[0]['shape']}, one EM step | {cells} | - | - | "
          f"{larges[0]['log_likelihood']:.1f} |")


if __name__ == "__main__":
    main()

"""AutoTimes on ETTh1 (multivariate, lookback 672, horizons 96-720) beside the paper, the
linear floor, DLinear and "AutoTimes without the LLM", all in one run.

AutoTimes and its ablation train once and forecast every horizon by rolling out (one model
for all horizons, scored by ``evaluate_ett_horizons``); ridge and DLinear train one model per
horizon (``evaluate_ett``). Every model is scored on the same test windows: every
``--test-stride``-th one (1 = all of them, the literature's protocol). On a CPU the LLM
budget is the ``--max-steps`` x ``--batch-size`` training windows drawn at random (with the
seed) from the 55,111 channel windows, and the test stride. Validation every ``--val-every``
steps gives the learning curve of AutoTimes and of its ablation at the same steps; each keeps
its projectors from the step with the lowest validation MSE.

    python benchmarks/autotimes.py                     # cheap defaults (150 steps of 16)
    python benchmarks/autotimes.py --max-steps 1000 --batch-size 32 --val-every 100
                                                       # the run in BENCHMARKS.md
    python benchmarks/autotimes.py --test-stride 1 --max-steps 0   # full protocol (a GPU)
    python benchmarks/autotimes.py --max-steps 200 --val-every 50 --models autotimes \
        --learning-rates 1e-3 2e-3 5e-3 --timestamps    # rate chosen on validation, then
                                                        # the timestamp variant at that rate
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from seqprob.forecasting.autotimes import AutoTimesForecaster
from seqprob.forecasting.evaluation import evaluate_ett, evaluate_ett_horizons
from seqprob.forecasting.linear import RidgeForecaster
from seqprob.forecasting.neural import NeuralForecaster

# AutoTimes paper (LLaMA-7B, lookback 672), MSE / MAE; TARGETS.md.
PAPER = {"AutoTimes (paper, LLaMA-7B)": {96: (0.360, 0.400), 192: (0.388, 0.419),
                                         336: (0.401, 0.429), 720: (0.406, 0.440)},
         "AutoTimes w/o LLM (paper)": {96: (0.365, 0.399), 192: (0.405, 0.425),
                                       336: (0.429, 0.441), 720: (0.450, 0.468)}}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm", default="smollm2-135m", help="seqprob.lm.load name or path")
    p.add_argument("--lookback", type=int, default=672)
    p.add_argument("--segment-length", type=int, default=96)
    p.add_argument("--horizons", type=int, nargs="+", default=[96, 192, 336, 720])
    p.add_argument("--max-steps", type=int, default=150,
                   help="AutoTimes optimizer steps (0: no limit, --epochs epochs)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--learning-rates", type=float, nargs="+",
                   help="AutoTimes: fit one model per rate and report the one with the lowest "
                        "validation MSE (test never chooses); the timestamp variant then uses "
                        "that rate (default: --learning-rate alone)")
    p.add_argument("--val-windows", type=int, default=112)
    p.add_argument("--val-every", type=int, default=50,
                   help="validate every this many steps (the learning curve); the best "
                        "projectors by validation MSE are kept")
    p.add_argument("--timestamps", action="store_true",
                   help="also run AutoTimes with timestamp embeddings (cached on disk)")
    p.add_argument("--test-stride", type=int, default=16)
    p.add_argument("--models", nargs="+", default=["autotimes", "nollm", "ridge", "dlinear"],
                   choices=["autotimes", "nollm", "ridge", "dlinear"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", help="also append the rows as JSON lines here")
    return p.parse_args()


def autotimes(args, lm, timestamps: bool = False) -> AutoTimesForecaster:
    return AutoTimesForecaster(
        lm, segment_length=args.segment_length, lookback=args.lookback,
        width=576 if lm is None else None, timestamps=timestamps, max_epochs=args.epochs,
        max_steps=args.max_steps or None, batch_size=args.batch_size,
        learning_rate=args.learning_rate, max_val_windows=args.val_windows,
        val_every=args.val_every, device=args.device, random_state=args.seed,
        verbose=not args.quiet)


def one_for_all(args, name: str, model, stride: int) -> list[dict]:
    start = time.perf_counter()
    scores = evaluate_ett_horizons("ETTh1", model, args.lookback, args.horizons,
                                   stride=stride, timestamps=model.get_params()["timestamps"])
    seconds = time.perf_counter() - start
    return [{"model": name, "horizon": h, "stride": stride, "mse": s["mse"], "mae": s["mae"],
             "windows": s["test_windows"], "seconds": seconds,
             "train_seconds": s["train_seconds"], "history": s["history"],
             "learning_rate": model.learning_rate, "val_mse": s["model"].best_val_mse_}
            for h, s in scores.items()]


def searched(args, stride: int) -> list[dict]:
    """AutoTimes at each of ``--learning-rates``; the rate with the lowest validation MSE is
    kept (``args.learning_rate`` is set to it for the jobs after this one); the others' rows
    are marked ``search_only`` and reported by their validation MSE alone."""
    name = f"AutoTimes ({args.lm}, frozen)"
    rows = []
    for rate in args.learning_rates or [args.learning_rate]:
        args.learning_rate = rate
        rows += one_for_all(args, name, autotimes(args, args.lm), stride)
    best = min(rows, key=lambda r: r["val_mse"])["learning_rate"]
    args.learning_rate = best
    return [{**r, "search_only": r["learning_rate"] != best} for r in rows]


def search_table(rows: list[dict]) -> str:
    """Validation MSE (best step) per learning rate of the search; test is not shown."""
    rates = {r["learning_rate"]: r for r in rows if "search_only" in r}
    if len(rates) < 2:
        return ""
    lines = [["learning rate", "best validation MSE", "kept"], ["---"] * 3]
    lines += [[f"{lr:g}", f"{r['val_mse']:.4f}", "yes" if not r["search_only"] else ""]
              for lr, r in sorted(rates.items())]
    return "learning-rate search\n" + "\n".join("| " + " | ".join(x) + " |" for x in lines)


def per_horizon(args, name: str, model, stride: int) -> list[dict]:
    rows = []
    for h in args.horizons:
        start = time.perf_counter()
        s = evaluate_ett("ETTh1", model, args.lookback, h, stride=stride)
        rows.append({"model": name, "horizon": h, "stride": stride, "mse": s["mse"],
                     "mae": s["mae"], "windows": s["test_windows"],
                     "seconds": time.perf_counter() - start})
    return rows


def run(args) -> list[dict]:
    """Every requested model's rows; each is printed (and appended to ``--out``) when done."""
    stride, jobs = args.test_stride, []
    if "autotimes" in args.models:
        jobs.append(lambda: searched(args, stride))
    if args.timestamps:
        jobs.append(lambda: one_for_all(args, f"AutoTimes ({args.lm}, frozen, timestamps)",
                                        autotimes(args, args.lm, timestamps=True), stride))
    if "nollm" in args.models:
        jobs += [lambda s=s: one_for_all(args, "AutoTimes w/o LLM (same projectors)",
                                         autotimes(args, None), s)
                 for s in sorted({stride, 1})]
    if "dlinear" in args.models:
        jobs.append(lambda: per_horizon(args, "DLinear", NeuralForecaster(
            "dlinear", max_epochs=args.epochs, batch_size=256, random_state=args.seed,
            device=args.device, verbose=not args.quiet), stride))
    if "ridge" in args.models:
        jobs.append(lambda: per_horizon(args, "ridge (linear floor)", RidgeForecaster(),
                                        stride))
    rows = []
    for job in jobs:
        done = job()
        rows += done
        for r in done:
            line = json.dumps({k: v for k, v in r.items() if k != "history"})
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")
    return rows


def learning_curves(rows: list[dict], stride: int) -> str:
    """Validation MSE (next segment, every position) against optimizer steps, one column per
    AutoTimes model that recorded a curve (the ablation at the same steps)."""
    curves = {r["model"]: {h["step"]: h["val_mse"] for h in r["history"]}
              for r in rows if r.get("history") and r["stride"] == stride
              and not r.get("search_only")}
    if not curves:
        return ""
    steps = sorted({s for c in curves.values() for s in c})
    lines = [["step", *curves], ["---"] * (len(curves) + 1)]
    lines += [[str(s), *(f"{c[s]:.4f}" if s in c else "—" for c in curves.values())]
              for s in steps]
    return "validation MSE by step\n" + "\n".join("| " + " | ".join(x) + " |" for x in lines)


def table(rows: list[dict], horizons: list[int]) -> str:
    rows = [r for r in rows if not r.get("search_only")]
    keys = sorted({(r["model"], r["stride"]) for r in rows}, key=lambda k: (k[1], k[0]))
    body = []
    for model, stride in keys:
        got = {r["horizon"]: r for r in rows if r["model"] == model and r["stride"] == stride}
        cells = [f"{got[h]['mse']:.3f} / {got[h]['mae']:.3f}" for h in horizons]
        mse = sum(got[h]["mse"] for h in horizons) / len(horizons)
        mae = sum(got[h]["mae"] for h in horizons) / len(horizons)
        seconds = max(r["seconds"] for r in got.values()) if model.startswith("AutoTimes") \
            else sum(r["seconds"] for r in got.values())
        body.append([model, str(stride), *cells, f"{mse:.3f} / {mae:.3f}", f"{seconds:.0f}"])
    for model, ref in PAPER.items():
        cells = [f"{ref[h][0]:.3f} / {ref[h][1]:.3f}" if h in ref else "—" for h in horizons]
        avg = [sum(ref[h][i] for h in ref) / len(ref) for i in (0, 1)]
        body.append([model, "1", *cells, f"{avg[0]:.3f} / {avg[1]:.3f}", "—"])
    header = ["model", "test stride", *[f"H={h}" for h in horizons], "average", "seconds"]
    lines = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = run(args)
    print(search_table(rows))
    print(learning_curves(rows, args.test_stride))
    print(table(rows, args.horizons))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory {peak:.1f} GiB; total {time.perf_counter() - start:.0f} s; "
          f"windows per horizon at stride "
          f"{args.test_stride}: " + ", ".join(
              f"{r['horizon']}: {r['windows']}" for r in rows
              if r["stride"] == args.test_stride and r["model"].startswith("AutoTimes w/o")))


if __name__ == "__main__":
    main()

"""The cost of training the state-space forecasters on CPU (issue #13 item 2).

For each backbone and horizon: the median wall and process seconds of one training step
(forward, the loss — SpaceTime's three parts —, backward, Adam) on ETTh1 univariate OT windows
(lookback 336), built exactly as ``NeuralForecaster.fit`` builds them; with ``--full-pass``
also the wall seconds of one pass over every training window (the target: SpaceTime at the
paper's width in at most 60 s on the 2-core machine).

    python benchmarks/forecast_step.py                          # step table, H 96 and 720
    python benchmarks/forecast_step.py --full-pass --horizons 96
    python benchmarks/forecast_step.py --profile spacetime      # torch.profiler top ops
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqprob.cli.table import format_table
from seqprob.forecasting import NeuralForecaster
from seqprob.forecasting.evaluation import _ett_data
from seqprob.forecasting.windows import StandardScaler

# The paper's width for SpaceTime (its reference ETT configuration); S4 and Mamba at the
# same width, two layers, state 16 (their backbone's shape).
WIDTH = {"spacetime": {}, "s4": {"d_model": 128, "d_state": 16},
         "mamba": {"d_model": 128, "d_state": 16}}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(WIDTH), choices=list(WIDTH))
    p.add_argument("--horizons", type=int, nargs="+", default=[96, 720])
    p.add_argument("--lookback", type=int, default=336)
    p.add_argument("--batch-size", type=int, default=50, help="the reference's 50")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--full-pass", action="store_true",
                   help="also time one pass over every training window")
    p.add_argument("--profile", choices=list(WIDTH), help="print torch.profiler's top ops")
    return p.parse_args()


def setup(name: str, lookback: int, horizon: int):
    """``(forecaster with network_ built, training windows, loss(items) -> scalar)``."""
    train, _, _ = _ett_data("ETTh1", lookback + horizon, "OT")
    model = NeuralForecaster(name, lookback=lookback, output_length=horizon,
                             backbone_kwargs=WIDTH[name], verbose=False)
    model.scaler_ = StandardScaler().fit(train)
    model.x_scaler_, model.n_channels_ = None, 1
    model.network_ = model._build(1, 0).train()
    data = model._windows(train, None, 1)
    levels = torch.zeros(0)

    def loss(items: torch.Tensor) -> torch.Tensor:
        context, target, cov = model._batch(data, items, torch.device("cpu"))
        out, aux = model.network_.training_forward(context, cov)
        value = model._loss(out, target, levels)
        return value if aux is None else value + aux
    return model, data, loss


def step(opt: torch.optim.Optimizer, loss, items: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss(items).backward()
    opt.step()


def time_steps(name: str, lookback: int, horizon: int, batch: int, repeats: int,
               full_pass: bool) -> list:
    model, data, loss = setup(name, lookback, horizon)
    opt = torch.optim.Adam(model.network_.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    n = len(data[0])
    step(opt, loss, torch.randint(0, n, (batch,), generator=gen))         # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        items = torch.randint(0, n, (batch,), generator=gen)
        w, c = time.perf_counter(), time.process_time()
        step(opt, loss, items)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    row = [name, horizon, f"{1e3 * statistics.median(walls):.0f}",
           f"{1e3 * statistics.median(cpus):.0f}", n, -(-n // batch)]
    if full_pass:
        start = time.perf_counter()
        for items in torch.randperm(n, generator=gen).split(batch):
            step(opt, loss, items)
        row.append(f"{time.perf_counter() - start:.1f}")
    return row


def profile(name: str, lookback: int, horizon: int, batch: int) -> None:
    model, _, loss = setup(name, lookback, horizon)
    opt = torch.optim.Adam(model.network_.parameters(), lr=1e-3)
    items = torch.arange(batch)
    step(opt, loss, items)
    with torch.profiler.profile() as prof:
        for _ in range(3):
            step(opt, loss, items)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args.profile, args.lookback, args.horizons[0], args.batch_size)
        return
    rows = [time_steps(name, args.lookback, h, args.batch_size, args.repeats, args.full_pass)
            for name in args.models for h in args.horizons]
    header = ["model", "horizon", "step ms (wall)", "step ms (cpu)", "windows", "steps/pass"]
    print(format_table(header + (["pass s (wall)"] if args.full_pass else []), rows))


if __name__ == "__main__":
    main()

"""One HMM filter step: ``HMM.step`` (probability-space ``predict``/``condition``, the state
kept as probabilities) against the same step through the log-space reference twin
(``predict_log``/``condition_log``, logsumexp), per step, for a categorical HMM.

    PYTHONPATH=. python benchmarks/hmm_step.py [--batch 8] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from seqprob.cli.table import format_table
from seqprob.hmm import HMM
from seqprob.hmm.step import condition_log, predict_log


def per_step(fn, steps: int) -> float:
    fn(2)  # warm-up
    start = time.perf_counter()
    fn(steps)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for k in (64, 256, 1024):
        torch.manual_seed(0)
        model = HMM(k, "categorical", n_symbols=2048)
        x = torch.randint(0, 2048, (args.batch, args.steps + 2))
        log_trans, log_emit = model.log_transmat.detach(), model.emission.log_emission.detach()

        @torch.no_grad()
        def ours(n, model=model, x=x):
            state = model.init_state(args.batch)
            for t in range(n):
                _, state = model.step(x[:, t], state)

        @torch.no_grad()
        def log_space(n, x=x, log_trans=log_trans, log_emit=log_emit, model=model):
            log_filter = model.log_startprob.detach().expand(args.batch, -1)
            for t in range(n):
                if t:
                    log_filter = predict_log(log_filter, log_trans)
                log_filter, _ = condition_log(log_filter, log_emit[:, x[:, t]].T)

        a, b = per_step(ours, args.steps), per_step(log_space, args.steps)
        rows.append((k, args.batch, f"{a:.3f}", f"{b:.3f}", f"{b / a:.1f}x"))
    print(format_table(["K", "batch", "HMM.step (ms)", "log-space twin (ms)", "speed-up"], rows))


if __name__ == "__main__":
    main()

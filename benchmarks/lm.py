"""Decoding speed on CPU: seqprob.lm.generate vs transformers' generate on SmolLM2-135M.

    python benchmarks/lm.py                       # batch 1 and 16, 32 new tokens, 5 runs each
    python benchmarks/lm.py --batches 1 --runs 3  # quicker

Both decode greedily from the same left-padded prompts for exactly ``--new-tokens`` tokens (EOS
forbidden on both sides by ``min_new_tokens = max_new_tokens``) and must produce the same
tokens, which the run checks. Runs alternate between the two (and which goes first) so that
load from other jobs on a shared machine hits both alike; each figure is the median over
``--runs`` of new tokens per second (prefill included) after one warm-up call each, by wall
clock and by the process's CPU time. One torch thread by default: the loop's per-step Python
overhead shows most there, and CPU time is steadiest on a loaded machine (with several
threads it would also count their spin-waiting).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))                 # this checkout

PROMPTS = [
    "The capital of France is", "Once upon a time, in a small village,", "def fibonacci(n):",
    "The best way to learn a language is", "In 1969, astronauts", "My favourite recipe uses",
    "The weather today", "A good night's sleep", "Photosynthesis is the process",
    "To install the package, run", "The stock market fell because", "Dear hiring manager,",
    "The three laws of motion", "Cats are", "Write a haiku about autumn:", "The meeting is at",
]


def _time(fn) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(lm, batch: int, new_tokens: int, runs: int) -> dict[str, tuple[float, float]]:
    """Median new tokens per second, by wall clock and by process CPU time, of each side."""
    import torch

    from seqprob.lm import generate

    prompts = (PROMPTS * (batch // len(PROMPTS) + 1))[:batch]
    tok = lm.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)

    def ours():
        return generate(lm, prompts, new_tokens, min_new_tokens=new_tokens).token_ids

    def theirs():
        with torch.no_grad():
            out = lm.model.generate(**enc, max_new_tokens=new_tokens,
                                    min_new_tokens=new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
        return out[:, enc.input_ids.shape[1]:]

    if not torch.equal(ours(), theirs()):
        raise AssertionError("seqprob and transformers decoded different tokens")
    sides = {"seqprob": ours, "transformers": theirs}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for run in range(runs):
        order = list(sides) if run % 2 == 0 else list(sides)[::-1]
        for name in order:
            times[name].append(_time(sides[name]))
    total = batch * new_tokens
    return {name: (total / statistics.median(w for w, _ in ts),
                   total / statistics.median(c for _, c in ts)) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    import transformers

    from seqprob.cli.table import format_table
    from seqprob.lm import load

    torch.set_num_threads(args.threads)
    lm = load("smollm2-135m")
    print(f"SmolLM2-135M-Instruct fp32, greedy, {args.new_tokens} new tokens, median of "
          f"{args.runs}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{args.threads} threads, {platform.machine()}")
    rows = []
    for batch in args.batches:
        r = bench(lm, batch, args.new_tokens, args.runs)
        (ours_wall, ours_cpu), (hf_wall, hf_cpu) = r["seqprob"], r["transformers"]
        rows.append((batch, f"{ours_wall:.1f}", f"{hf_wall:.1f}", f"{ours_wall / hf_wall:.2f}",
                     f"{ours_cpu:.1f}", f"{hf_cpu:.1f}", f"{ours_cpu / hf_cpu:.2f}"))
        print(f"batch {batch} done", file=sys.stderr, flush=True)
    print(format_table(["batch", "seqprob tok/s", "transformers tok/s", "ratio",
                        "seqprob tok/CPU-s", "transformers tok/CPU-s", "ratio (CPU)"], rows))

if __name__ == "__main__":
    main()

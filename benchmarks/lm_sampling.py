"""Ancestral sampling throughput on CPU, the cost that dominates HMM distillation:
``seqprob.lm.sample`` against transformers' ``model.generate(do_sample=True)`` on SmolLM2-135M,
fp32 and under bf16 autocast, at several batch sizes.

    PYTHONPATH=. python benchmarks/lm_sampling.py                 # batches 16 64 256, 32 tokens
    PYTHONPATH=. python benchmarks/lm_sampling.py --batches 16 --tokens 8   # quick

Prompts: the shipped instructions in SmolLM2's chat template (as distillation samples them),
left-padded; exactly ``--tokens`` new tokens per row on both sides (EOS disabled), temperature
1, no truncation. Figures: new tokens per second by wall clock and by the process's CPU time
(steadier on a loaded machine), one run per cell after a warm-up, ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import torch

from seqprob.lm import chat_prompt, instructions, load, sample


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _ours(lm, rows, enc, tokens, dtype) -> None:
    sample(lm, rows, len(rows), tokens, autocast_dtype=dtype, eos_token_id=(), random_state=0)


def _peer(lm, rows, enc, tokens, dtype) -> None:
    autocast = (contextlib.nullcontext() if dtype is None
                else torch.autocast("cpu", dtype=torch.bfloat16))
    with autocast, torch.no_grad():
        lm.model.generate(**enc, do_sample=True, max_new_tokens=tokens, min_new_tokens=tokens,
                          temperature=1.0, top_k=None, top_p=1.0,
                          pad_token_id=lm.tokenizer.pad_token_id)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = load("smollm2-135m")
    texts = [chat_prompt(lm.tokenizer, p) for p in instructions()]
    print(json.dumps({"load": os.getloadavg(), "threads": args.threads,
                      "tokens": args.tokens}), flush=True)
    for batch in args.batches:
        rows = texts[:batch]
        enc = lm.tokenizer(rows, return_tensors="pt", padding=True, padding_side="left")
        for dtype in (None, "bfloat16"):
            for name, fn in (("seqprob.lm.sample", _ours), ("transformers generate", _peer)):
                def run(fn=fn, dtype=dtype, rows=rows, enc=enc):
                    fn(lm, rows, enc, args.tokens, dtype)

                if batch == args.batches[0]:
                    run()                                                   # warm-up
                wall, cpu = _timed(run)
                n = batch * args.tokens
                print(json.dumps({"sampler": name, "batch": batch, "dtype": dtype or "fp32",
                                  "tokens_per_s_wall": round(n / wall, 1),
                                  "tokens_per_s_cpu": round(n / cpu, 1),
                                  "load": round(os.getloadavg()[0], 1)}), flush=True)

if __name__ == "__main__":
    main()

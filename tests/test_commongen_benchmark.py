"""benchmarks/commongen.py's tabulation: success, perplexity and its ratio to the LM alone, and
degenerate shares, recomputed by hand from a results file; sets missing for some method are
left out of every method's row."""

import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("commongen", BENCH / "commongen.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_tabulate_by_hand(tmp_path):
    bench = load_benchmark()
    concepts = ["dog", "frisbee", "throw"]
    rows = [
        (0, "lm", "A dog runs.", False, 4, 2.0),
        (1, "lm", "The dog threw a frisbee.", True, 6, 3.0),
        (0, "hmm-beam-1s", "A dog throws a frisbee.", True, 6, 6.0),
        (1, "hmm-beam-1s", "Dog, frisbee, throw.", True, 4, 4.0),
        (2, "lm", "Only the LM ran this set.", False, 5, 1.0),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(
        {"set": s, "concepts": concepts, "prompt": "zero-shot", "method": m, "text": t,
         "success": ok, "tokens": n, "nll": nll, "seconds": 1.0 + s}) + "\n"
        for s, m, t, ok, n, nll in rows))
    table = bench.tabulate(path)
    assert "2 sets (of the first 2)" in table
    lm_ppl, hmm_ppl = math.exp(5.0 / 10), math.exp(10.0 / 10)
    line = {row.split()[0]: row for row in table.splitlines()[3:]}
    assert f"{lm_ppl:.2f}" in line["lm"] and "50% " in line["lm"]
    assert f"{hmm_ppl:.2f}" in line["hmm-beam-1s"] and "100% " in line["hmm-beam-1s"]
    assert f"{hmm_ppl / lm_ppl:.2f}x" in line["hmm-beam-1s"]
    # "Dog, frisbee, throw." is a bare list: one of two outputs degenerate
    assert "50.0%" in line["hmm-beam-1s"] and "0.0%" in line["lm"]

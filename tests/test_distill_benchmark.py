"""benchmarks/distill_default.py (the K sweep the shipped HMM is chosen with) on a tiny LM."""

import importlib
import importlib.util
import json
from pathlib import Path

from seqprob.hmm.artifact import artifact_config

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distill_default.py"


def test_k_sweep_shares_one_sample_set_and_reports_each_k(tmp_path, capsys, monkeypatch):
    module = importlib.import_module("seqprob.hmm.distill")
    monkeypatch.setattr(module, "sample", module.sample)       # restored after the test
    spec = importlib.util.spec_from_file_location("distill_default", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--model", "tiny", "--n-states", "3", "5", "--device", "cpu",
                       "--set", "batch_size=8", "--set", "n_init_batches=1", "--set",
                       "n_em_steps=1", "--set", "n_held_out=4", "--set", "seq_len=8",
                       "--output-dir", str(tmp_path), "--quiet"])
    assert [r["n_states"] for r in rows] == [3, 5]
    for row in rows:
        assert abs(row["artifact_held_out"] - row["held_out"]["hmm"]) < 1e-2
        assert artifact_config(row["artifact"])["metadata"]["recipe"]["n_states"] == row[
            "n_states"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sampled_tokens"] == (4 + 2 * 8) * 8 and summary["sampling_tokens_per_s"] > 0

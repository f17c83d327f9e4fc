"""``seqprob hmm fit`` end to end: CSV with a sequence column, NumPy with a lengths file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqprob.cli import main
from seqprob.hmm.estimators import CategoricalHMM, GaussianHMM


def test_fit_csv_with_sequence_column(tmp_path, capsys):
    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"run": np.repeat(["a", "b", "c"], [30, 20, 10]),
                          "when": "2020-01-01", "x": np.r_[rng.randn(30) - 4, rng.randn(30) + 4],
                          "y": rng.randn(60)})
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "m.safetensors"
    code = main(["hmm", "fit", str(tmp_path / "data.csv"), "--sequence-column", "run", "-n", "2",
                 "--covariance-type", "full", "--output", str(out)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_sequences"] == 3 and summary["n_samples"] == 60
    model = GaussianHMM.load(out)
    X = frame[["x", "y"]].to_numpy()
    np.testing.assert_allclose(model.score(X, [30, 20, 10]), summary["log_likelihood"])
    np.testing.assert_allclose(summary["bic"], model.bic(X, [30, 20, 10]))
    assert isinstance(summary["converged"], bool) and summary["n_iter"] >= 1


def test_fit_npy_with_lengths_file_categorical(tmp_path, capsys):
    np.save(tmp_path / "tokens.npy", np.random.RandomState(0).randint(0, 5, 40))
    (tmp_path / "lengths.txt").write_text("25\n15\n")
    out = tmp_path / "cat.safetensors"
    assert main(["hmm", "fit", str(tmp_path / "tokens.npy"), "--model", "categorical",
                 "--lengths", str(tmp_path / "lengths.txt"), "-n", "3", "--n-iter", "5",
                 "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "CategoricalHMM" and summary["n_sequences"] == 2
    assert CategoricalHMM.load(out).emissionprob_.shape == (3, 5)


def test_errors_exit_with_code_2(tmp_path, capsys):
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "d.csv", index=False)
    assert main(["hmm", "fit", str(tmp_path / "d.csv"), "--columns", "nope"]) == 2
    assert "--columns: no column(s) ['nope']" in capsys.readouterr().err
    assert main(["hmm", "fit", str(tmp_path / "missing.csv")]) == 2
    (tmp_path / "bad.txt").write_text("2\n")
    assert main(["hmm", "fit", str(tmp_path / "d.csv"), "--lengths",
                 str(tmp_path / "bad.txt")]) == 2
    assert "lengths: expected entries summing to 3" in capsys.readouterr().err


@pytest.mark.slow
def test_ett_regimes_example_writes_a_figure(tmp_path):
    root = Path(__file__).resolve().parents[1]  # the example reads the shipped ETTh1
    out = subprocess.run([sys.executable, str(root / "examples" / "hmm_ett_regimes.py"),
                          "--output", str(tmp_path / "r.png")],
                         capture_output=True, text=True, check=True, timeout=600, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    summary = json.loads(out.stdout)
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert summary["days"] > 700 and abs(sum(summary["occupancy"]) - 1) < 0.005  # rounded


@pytest.mark.parametrize("algorithm", ["viterbi", "map"])
def test_decode_matches_the_saved_model(tmp_path, capsys, algorithm):
    rng = np.random.RandomState(1)
    frame = pd.DataFrame({"run": np.repeat([1, 2], [25, 15]),
                          "x": np.r_[rng.randn(20) - 3, rng.randn(20) + 3]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    model_path, states = tmp_path / "m.safetensors", tmp_path / "states.csv"
    assert main(["hmm", "fit", str(tmp_path / "data.csv"), "--sequence-column", "run",
                 "--output", str(model_path)]) == 0
    capsys.readouterr()
    assert main(["hmm", "decode", str(model_path), str(tmp_path / "data.csv"),
                 "--sequence-column", "run", "--algorithm", algorithm,
                 "--output", str(states)]) == 0
    summary = json.loads(capsys.readouterr().out)
    log_prob, path = GaussianHMM.load(model_path).decode(frame[["x"]].to_numpy(), [25, 15],
                                                         algorithm=algorithm)
    np.testing.assert_array_equal(pd.read_csv(states)["state"], path)
    np.testing.assert_allclose(summary["log_prob"], log_prob)
    assert summary["n_samples"] == 40 and summary["model"] == "GaussianHMM"


def test_decode_categorical_to_stdout(tmp_path, capsys):
    symbols = np.random.RandomState(0).randint(0, 4, 30)
    np.save(tmp_path / "s.npy", symbols)
    model_path = tmp_path / "c.safetensors"
    assert main(["hmm", "fit", str(tmp_path / "s.npy"), "--model", "categorical", "-n", "2",
                 "--n-iter", "5", "--output", str(model_path)]) == 0
    capsys.readouterr()
    assert main(["hmm", "decode", str(model_path), str(tmp_path / "s.npy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = CategoricalHMM.load(model_path).predict(symbols[:, None])
    assert lines[0] == "state" and [int(s) for s in lines[1:]] == expected.tolist()
    np.save(tmp_path / "f.npy", symbols + 0.5)  # floats are refused, never truncated
    assert main(["hmm", "decode", str(model_path), str(tmp_path / "f.npy")]) == 2
    assert "categorical symbols must be integers" in capsys.readouterr().err


def test_categorical_fit_refuses_fractional_and_missing_symbols(tmp_path, capsys):
    pd.DataFrame({"s": [0, 1, 2.5, 1]}).to_csv(tmp_path / "f.csv", index=False)
    pd.DataFrame({"s": [0, 1, None, 1]}).to_csv(tmp_path / "n.csv", index=False)
    for name, shown in (("f.csv", "[2.5] in data row 2"), ("n.csv", "[nan] in data row 2")):
        assert main(["hmm", "fit", str(tmp_path / name), "--model", "categorical",
                     "--output", str(tmp_path / "m.safetensors")]) == 2
        assert shown in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()
    pd.DataFrame({"s": [0.0, 1.0, 2.0, 1.0, -1.0]}).to_csv(tmp_path / "w.csv", index=False)
    assert main(["hmm", "fit", str(tmp_path / "w.csv"), "--model", "categorical", "--n-iter",
                 "2", "--output", str(tmp_path / "m.safetensors")]) == 0  # whole floats, -1
    assert CategoricalHMM.load(tmp_path / "m.safetensors").emissionprob_.shape == (2, 3)


def test_decode_refuses_a_model_of_another_kind(tmp_path, capsys):
    from seqprob.ssm import S4D

    S4D(4, d_state=4).save(tmp_path / "s4d.safetensors")
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(tmp_path / "d.csv", index=False)
    assert main(["hmm", "decode", str(tmp_path / "s4d.safetensors"), str(tmp_path / "d.csv")]
                ) == 2
    assert "not an HMM saved by 'seqprob hmm fit'" in capsys.readouterr().err

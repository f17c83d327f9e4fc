"""The command-line conventions: --version, help with defaults, exit code 2 and one line for
user errors, tracebacks for bugs."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import seqprob
from seqprob.cli import build_parser, main, user_error
from seqprob.cli.table import format_table
from seqprob.core import resolve_device

ROOT = Path(__file__).resolve().parents[1]


def test_info_lists_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "scan backend" in out and "reference" in out and "torch" in out


def test_info_reports_omp_wait_policy(capsys, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["info"]) == 0
    assert "OMP_WAIT_POLICY: unset (on a busy machine" in capsys.readouterr().out
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert main(["info"]) == 0
    assert "OMP_WAIT_POLICY: PASSIVE\n" in capsys.readouterr().out


def _walk(parser: argparse.ArgumentParser):
    """Every parser under ``parser`` (subcommands, their actions), with ``parser`` first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_version_comes_from_the_package(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"seqprob {seqprob.__version__}\n"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject


def test_every_option_has_help_and_shows_its_default():
    parsers = list(_walk(build_parser()))
    assert {p.prog for p in parsers} >= {"seqprob hmm fit", "seqprob hmm decode",
                                         "seqprob forecast", "seqprob distill"}
    for parser in parsers:
        for action in parser._actions:
            if action.option_strings and action.help is not argparse.SUPPRESS:
                assert action.help, f"{parser.prog} {action.option_strings}: no help"
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text
    fit = next(p for p in parsers if p.prog == "seqprob hmm fit").format_help()
    assert "hidden states (default: 2)" in fit and "(default: hmm.safetensors)" in fit


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": [0.1, 2.0, -1.5, 0.3, 1.1, -0.2]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("argv, message", [
    (["hmm", "fit", "{csv}", "--device", "bogus"], "device: expected 'auto', 'cpu'"),
    (["hmm", "fit", "{csv}", "--output", "{dir}"], "is a directory, expected a file path"),
    (["hmm", "fit", "{csv}", "--output", "{dir}/no/m.safetensors"], "no folder"),
    (["hmm", "fit", "{dir}/missing.csv"], "argument input: no file at"),
    (["hmm", "fit", "{bad}"], "is not a readable CSV file"),
    (["hmm", "fit", "{csv}", "--model", "categorical"], "categorical symbols must be integers"),
    (["hmm", "decode", "{csv}", "{csv}"], "is not a readable seqprob checkpoint"),
    (["forecast", "{csv}", "--plot", "{dir}"], "is a directory"),
    (["forecast", "{bad}"], "is not a readable CSV file"),
    (["generate", "--prompt", "hi", "--output", "{dir}"], "is a directory"),
    (["hmm", "fit", "{csv}", "--n-iter", "ten"], "invalid int value: 'ten'"),
])
def test_user_errors_exit_2_with_one_line(argv, message, small_csv, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b'x,y\n1,2\n"3,4\n\xff\xfe')
    filled = [a.format(csv=small_csv, dir=tmp_path, bad=bad) for a in argv]
    assert main(filled) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert "Traceback" not in captured.err and not list(tmp_path.glob(".*"))


def test_missing_optional_dependency_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` fails
    assert main(["generate", "--prompt", "hi"]) == 2
    assert "pip install 'seqprob[lm]'" in capsys.readouterr().err
    assert user_error(ModuleNotFoundError("No module named 'dask'", name="dask")) == (
        "No module named 'dask' (pip install 'seqprob[dask]')")


def test_bugs_keep_their_traceback(monkeypatch):
    def run_with_a_bug(args):  # a ValueError raised by Python inside seqprob code
        return format_table(["a"], [[1, 2]])

    with pytest.raises(ValueError) as raised:
        format_table(["a"], [[1, 2]])
    assert user_error(raised.value) is None
    monkeypatch.setattr("seqprob.cli.info.run", run_with_a_bug)
    with pytest.raises(ValueError, match="zip"):
        main(["info"])
    with pytest.raises(ValueError) as raised:
        resolve_device("bogus")  # raised on purpose by seqprob's validation
    assert user_error(raised.value).startswith("device: expected")


def test_console_script_exit_codes(small_csv, tmp_path):
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "seqprob", *argv], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    done = run("hmm", "fit", str(small_csv), "--device", "bogus")
    assert done.returncode == 2 and done.stderr.startswith("seqprob hmm fit: error: device:")
    assert run("--version").stdout.strip() == f"seqprob {seqprob.__version__}"

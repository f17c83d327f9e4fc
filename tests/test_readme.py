"""The README runs as written: its python blocks, pasted in order into an empty folder, run in
one process; the files its shell commands read exist by then (made by the README or shipped in
the repository); its links stay inside the repository.

A block preceded by the line ``<!-- readme-test: slow -->`` (one that distills an HMM or trains
for minutes) runs only in the slow test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SLOW = "<!-- readme-test: slow -->"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
# a file argument of a shell command: a path with one of the suffixes the commands read or write
FILE = re.compile(r"^[\w./-]+\.(csv|txt|npy|nc|safetensors|jsonl|py|png)$")
WRITES = ("--output", "--plot", "--checkpoint", ">")


def blocks(language: str) -> list[tuple[str, bool]]:
    """``(code, slow)`` for every fenced block of ``language``, in order."""
    text = README.read_text(encoding="utf-8")
    return [(m[2], text[:m.start()].rstrip().endswith(SLOW))
            for m in FENCE.finditer(text) if m[1] == language]


def run_python_blocks(folder: Path, slow: bool) -> None:
    code = "\n".join(block for block, is_slow in blocks("python") if slow or not is_slow)
    (folder / "readme.py").write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "SEQPROB_CACHE": str(folder / "cache")}
    done = subprocess.run([sys.executable, "readme.py"], cwd=folder, env=env, text=True,
                          capture_output=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-4000:]


def shell_files(folder: Path) -> list[str]:
    """The files the README's shell commands read that neither the python blocks (run in
    ``folder``), an earlier command, nor the repository provide."""
    made, missing = set(), []
    for block, _ in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for i, word in enumerate(words):
                if not FILE.match(word):
                    continue
                if i and words[i - 1] in WRITES:
                    made.add(word)
                elif word not in made and not (folder / word).exists() \
                        and not (ROOT / word).exists():
                    missing.append(word)
    return missing


def test_readme_links_stay_in_the_repository():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert not target.startswith(("..", "/")) and (ROOT / target).exists(), target
    assert "../" not in text and "/work/" not in text


def test_readme_blocks_are_found():
    python = blocks("python")
    assert len(python) >= 8 and sum(slow for _, slow in python) <= 2
    assert blocks("bash")


@pytest.mark.slow
@pytest.mark.ci
def test_readme_runs_in_an_empty_folder(tmp_path):
    run_python_blocks(tmp_path, slow=False)
    assert shell_files(tmp_path) == []


@pytest.mark.slow
def test_readme_runs_in_an_empty_folder_with_its_slow_blocks(tmp_path):
    run_python_blocks(tmp_path, slow=True)
    assert shell_files(tmp_path) == []

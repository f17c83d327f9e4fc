"""Seconds per EM iteration at several git revisions of seqprob, one table of medians and ratios
(issue #16: "an EM iteration before and after"):

    python benchmarks/hmm_versions.py [--revs ab73748~1,ab73748,HEAD] [--rounds 3]
                                      [--iters 10] [--threads 1]

Each revision is checked out with ``git worktree add --detach`` under /tmp (once; reused on
later runs) and timed in a subprocess whose ``PYTHONPATH`` is that checkout, so every revision
runs its own seqprob; ``.`` times this working tree as it is (uncommitted changes included).
Each round times every (revision, shape) once, the revisions in alternating order (forward,
then reversed) so drift on a shared machine does not favour one; the table gives the median
over rounds of seconds per iteration (one untimed warm-up fit per process first: numba
compilation) and each revision's ratio to the first. Shapes: the first two of
``benchmarks/hmm.py`` (categorical K=64 V=1000, 200 x 100; Gaussian diag K=16 D=8,
100 x 500), fp64, fixed starting parameters, ``tol=0`` so every run does ``--iters``
iterations. The log-likelihood after the last iteration is printed per revision (they agree
unless a revision changed the arithmetic).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _hmm_benchmark():
    """This checkout's ``benchmarks/hmm.py``: its shapes, data and timed fit. It imports no
    seqprob at load; the ``sys.path`` entry it adds for this checkout's seqprob is undone, so a
    child imports its revision's seqprob (from ``PYTHONPATH``)."""
    spec = importlib.util.spec_from_file_location("bench_hmm", Path(__file__).with_name("hmm.py"))
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    spec.loader.exec_module(module)
    sys.path[:] = path
    return module


BENCH = _hmm_benchmark()
SHAPES = {shape["kind"]: shape for shape in BENCH.SHAPES[:2]}


def child(kind: str, iters: int, threads: int) -> None:
    """Time one fit of ``iters`` EM iterations with the seqprob on ``sys.path`` (the
    revision's checkout) and print seconds per iteration, the final log-likelihood and where
    seqprob was imported from."""
    import torch

    import seqprob
    from seqprob.hmm import estimators

    torch.set_num_threads(threads)
    shape = SHAPES[kind]
    X, lengths, start = BENCH._data_and_start(shape, np.random.RandomState(0))
    cls = getattr(estimators, "CategoricalHMM" if kind == "categorical" else "GaussianHMM")
    BENCH._fit_timed(cls, shape, X, lengths, start, 1)                # warm-up (numba)
    seconds, history = BENCH._fit_timed(cls, shape, X, lengths, start, iters)
    print(json.dumps(dict(seconds=seconds, ll=float(history[-1]),
                          seqprob=str(Path(seqprob.__file__).parent))))


def checkout(rev: str) -> tuple[str, Path]:
    """``(short sha, path)`` of a detached worktree of ``rev`` under /tmp (``.``: this tree)."""
    if rev == ".":
        return "worktree", ROOT
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=True).stdout.strip()
    path = Path(f"/tmp/seqprob-rev-{sha}")
    if not (path / "seqprob").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), sha],
                       capture_output=True, check=True)
    return sha, path


def run_child(path: Path, kind: str, iters: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(path))
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--iters", str(iters),
                          "--threads", str(threads)], cwd=path, env=env, capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["seqprob"]).resolve() != (path / "seqprob").resolve():
        raise RuntimeError(f"{path}: the child imported seqprob from {result['seqprob']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", default="ab73748~1,ab73748,HEAD",
                        help="comma-separated git revisions; '.' is this working tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", default="categorical,gaussian")
    parser.add_argument("--child", choices=SHAPES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.iters, args.threads)
        return
    revs = args.revs.split(",")
    trees = [checkout(rev) for rev in revs]
    kinds = args.kinds.split(",")
    times = {(rev, kind): [] for rev in revs for kind in kinds}
    lls = {}
    for r in range(args.rounds):
        order = list(zip(revs, trees, strict=True))
        for rev, (_, path) in order if r % 2 == 0 else order[::-1]:
            for kind in kinds:
                result = run_child(path, kind, args.iters, args.threads)
                times[rev, kind].append(result["seconds"])
                lls[rev, kind] = result["ll"]
                print(f"round {r + 1} {rev} {kind}: {result['seconds']:.4f} s/iter", flush=True)
    print(f"\n{args.rounds} rounds, {args.iters} EM iterations per fit, {args.threads} torch "
          f"thread(s), load average {os.getloadavg()[0]:.2f}")
    print("| revision | " + " | ".join(f"{SHAPES[k]['name']} s/iter (ratio)" for k in kinds)
          + " | final log-likelihoods |")
    print("|---|" + "---|" * len(kinds) + "---|")
    for rev, (sha, _) in zip(revs, trees, strict=True):
        cells = []
        for kind in kinds:
            med = statistics.median(times[rev, kind])
            base = statistics.median(times[revs[0], kind])
            cells.append(f"{med:.4f} ({med / base:.3f})")
        ll = "; ".join(f"{lls[rev, kind]:.2f}" for kind in kinds)
        print(f"| {rev} ({sha}) | " + " | ".join(cells) + f" | {ll} |")


if __name__ == "__main__":
    main()

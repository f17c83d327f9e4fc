"""benchmarks/gpu.sh without a GPU: its syntax, and a smoke run of its python half on tiny CPU
shapes (Triton interpreted) whose table must hold every row, each within tolerance of the
reference; and the modules it imports stay free of the packages a GPU box may lack."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def _env(**extra):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHON": sys.executable, **extra}


def test_gpu_sh_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_gpu_check_imports_stay_lazy():
    code = ("import sys; import seqprob.core.scan, seqprob.hmm.em, seqprob.kernels.reference, "
            "seqprob.kernels.triton_step, seqprob.cli.table; "
            "print(sorted(m for m in ('pyro', 'statsmodels', 'lemminflect', 'transformers', "
            "'triton', 'mamba_ssm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=_env())
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_gpu_sh_cpu_smoke(tmp_path):
    pytest.importorskip("triton")
    run = subprocess.run(["bash", str(SCRIPT), "--device", "cpu", "--tiny", "--repeats", "1"],
                         capture_output=True, text=True, env=_env(OUT=str(tmp_path)),
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    table = (tmp_path / "gpu_table.txt").read_text()
    assert table in run.stdout
    for row in ("scan triton +fwd ", "scan triton +fwd\\+bwd", "scan reference +fwd ",
                "step triton", "step reference", "EM step K=6 V=11"):
        assert re.search(row, table), row
    errors = [float(e) for e in re.findall(r"\s(\d\.\de[+-]\d\d)$", table, re.M)]
    assert len(errors) == 7 and max(errors) < 1e-5
    if importlib.util.find_spec("mamba_ssm") is None:
        assert "not installed" in table

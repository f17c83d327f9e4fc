"""Large scale: one EM step with K=1024 states over a 49,152-token vocabulary, batch 256 x 32,
stays under 4 GB peak memory (measured in a fresh process; the time is in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_em_step_k1024_v49152_under_4gb():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hmm.py"), "--large-only"],
                         capture_output=True, text=True, check=True, timeout=900, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["peak_rss_gb"] < 4.0, result
    assert result["log_likelihood"] < 0 and result["log_likelihood"] > -1e7

#!/usr/bin/env bash
# The GPU check (issue #16.8), one command from the repository root on a machine with a CUDA
# device; finishes in a few minutes (each part has a time limit, 7.5 minutes in all):
#
#     bash benchmarks/gpu.sh              # OUT=dir also writes the table to $OUT/gpu_table.txt
#
# 1. pytest -m gpu: the CUDA-marked tests (Triton and mamba_ssm scans, the Triton step, HMM
#    inference and a neural forecaster on CUDA, each against its CPU or reference result);
# 2. benchmarks/gpu.py: the Triton (and mamba_ssm, when installed) selective scan and step
#    against the reference with achieved bandwidth as a fraction of the card's peak, and one EM
#    step of a K=4096, V=49,152 categorical HMM on 512 x 32 tokens; prints one table.
# Extra arguments go to gpu.py (e.g. --device cpu --tiny for a smoke run without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ "$#" -eq 0 ]; then
    echo "== pytest -m gpu"
    # only the modules holding gpu-marked tests: collecting the rest costs time on the clock
    mapfile -t files < <(grep -l "mark\.gpu" tests/test_*.py)
    timeout 210 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${files[@]}" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    summary=$(grep -E "(passed|failed|skipped|error|deselected)" "$log" | tail -n 1 | tr -d '=')
    [ "$status" -eq 124 ] && summary="timed out after 210 s: $summary"
    set -- --pytest "${summary:-no summary (exit $status)}"
fi
echo "== benchmarks/gpu.py"
timeout 240 "$PY" benchmarks/gpu.py "$@" ${OUT:+--out "$OUT/gpu_table.txt"}
rc=$?
exit $(( status || rc ))

#!/usr/bin/env bash
# The GPU-relevant parts of `make bench FULL=1` in one command (≤ 8 min on one GPU), one JSON of results:
# ResNet18 at 224 px (bf16, channels_last) from the decoded cache against its in-memory ceiling; one epoch of a
# real run through pipeline.train; its evaluation, attributions and store write. See benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [OUT.json]                                  # default artifacts/bench/gpu_check.json
#   PERIODEYE_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh OUT.json         # seconds on a CPU (the test's mode)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-artifacts/bench/gpu_check.json}"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PY" -m benchmarks.gpu_check "$OUT"

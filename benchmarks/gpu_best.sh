#!/usr/bin/env bash
# Issue 17's best recipe on a GPU in one command: the backbones' training speed (probe.json), then the whole run of
# configs/wikiart-best-gpu.yaml (decode, train, evaluate with test-time views, attributions, store) under a time
# limit, then every finished run's README row with its intervals (summary.json, from the store; a run cut off by the
# limit is simply absent). Extra arguments go to `python -m pipeline run` (e.g. --set runs.lite0-style-full.stage2_epochs=8).
#
#   bash benchmarks/gpu_best.sh [OUT_DIR] [--set KEY=VALUE ...]     # default artifacts/bench/gpu_best
#   GPU_BEST_TIMEOUT=1200 GPU_BEST_STORE=artifacts/gpu.duckdb GPU_BEST_PROBE=0 PYTHON=python3 bash benchmarks/gpu_best.sh OUT
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${1:-artifacts/bench/gpu_best}"
shift || true
STORE="${GPU_BEST_STORE:-artifacts/gpu-best.duckdb}"
CONFIG="${GPU_BEST_CONFIG:-configs/wikiart-best-gpu.yaml}"
mkdir -p "$OUT"
if [ "${GPU_BEST_PROBE:-1}" = 1 ]; then
  "$PY" -m benchmarks.gpu_best probe "$OUT/probe.json" --config "$CONFIG" "$@" > /dev/null || exit 1
fi
start=$(date +%s)
timeout "${GPU_BEST_TIMEOUT:-1500}" "$PY" -m pipeline run "$CONFIG" --store "$STORE" --quiet "$@" 2>&1 | tee "$OUT/run.log"
status=${PIPESTATUS[0]}
echo "pipeline run: exit $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/run.log"
"$PY" -m benchmarks.gpu_best summary "$STORE" "$OUT/summary.json"
exit "$status"

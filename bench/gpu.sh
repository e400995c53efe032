#!/usr/bin/env bash
# Every GPU benchmark of reglab in one run, printed as one table (see bench/gpu.py).
#   bench/gpu.sh [--dry-run] [--data-dir DIR] [--device cuda:N] [--no-amp]
# Runs from a source checkout without installing: PYTHONPATH gets src/ (and /tmp/site, where the
# dependencies may be unpacked); PYTHON picks the interpreter (default python3). With OUT set, the
# table is also written to $OUT/gpu_bench.txt, and with the command, environment and code version
# to $OUT/gpu_bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export REGLAB_COMMAND="bench/gpu.sh${*:+ $*}"  # what gpu_bench.json records (reglab.provenance)
exec "${PYTHON:-python3}" -m bench.gpu "$@"

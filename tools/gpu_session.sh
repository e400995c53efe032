#!/usr/bin/env bash
# The GPU benchmarks of docs/performance.md on a GPU machine that has no internet and whose python3
# has torch (and typer, rich) but not pydantic. Two steps, from the repository root:
#
#   tools/gpu_session.sh prepare   # here: pydantic's wheels into .whl/, Fashion-MNIST's IDX files
#                                  # into .gpudata/fashion-mnist/ (both git-ignored; copy them along)
#   tools/gpu_session.sh run       # there: bench/gpu.sh, then python -m bench.layout, into $OUT
#   tools/gpu_session.sh run --dry-run   # the same code paths on CPU at tiny size (PYTHON=.venv/bin/python)
#
# `run` installs the wheels into /tmp/site where pydantic is missing (bench/gpu.sh puts it on PYTHONPATH) and gives bench/gpu.sh
# GPU_LIMIT seconds (default 450) and bench.layout LAYOUT_LIMIT seconds (default 120), so that both fit
# one 10-minute call. Results: $OUT/gpu_bench.{txt,json} and $OUT/layout.{txt,json}, each with its
# command, environment and code version; docs/performance.md says how to read them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WHEELS=(pydantic pydantic_core annotated_types typing_inspection)

prepare() {
  mkdir -p .whl .gpudata/fashion-mnist
  for name in "${WHEELS[@]}"; do  # the versions this checkout's environment runs with
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$name==$version"
  done
  "$PY" -c "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()" data fetch fashion-mnist
  found=$("$PY" -c "from reglab.data.registry import dataset_status as status
print(next(row.location for row in status() if row.name == 'fashion-mnist'))")
  cp "$found"/*-ubyte* .gpudata/fashion-mnist/
  ls -l .whl .gpudata/fashion-mnist
}

run() {
  export PYTHON=${PYTHON:-python3}
  "$PYTHON" -c "import pydantic" 2>/dev/null ||
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export OUT=${OUT:-gpu_out} PYTHONPATH="src:/tmp/site" PYTHONUNBUFFERED=1
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  timeout "${GPU_LIMIT:-450}" bench/gpu.sh --data-dir .gpudata/fashion-mnist "$@" || echo "bench/gpu.sh: exit $?"
  REGLAB_COMMAND="python -m bench.layout $*" timeout "${LAYOUT_LIMIT:-120}" "$PYTHON" -m bench.layout "$@" \
    || echo "bench.layout: exit $?"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: tools/gpu_session.sh prepare|run" >&2; exit 2 ;;
esac

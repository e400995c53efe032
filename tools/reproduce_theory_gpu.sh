#!/usr/bin/env bash
# The dropout-chapter reproductions too slow for a small CPU (condensation with its three-layer nets,
# sample-size, r1-mnist; teacher-student again, whose results then carry the check of its disagreement),
# in their full setting on one CUDA GPU (a few minutes on an H100), written into docs/results/. Usage: tools/reproduce_theory_gpu.sh [MNIST_IDX_FOLDER]   (from the repository
# root; without the folder r1-mnist uses mnist-5k's real digits and says so in its results).
set -euo pipefail
PY=${PY:-.venv/bin/python}
MNIST=${1:-}
reproduce() { PYTHONPATH=src "$PY" -c "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()" reproduce "$@"; }
for name in condensation sample-size teacher-student; do
  rm -rf "docs/results/$name"
  reproduce "$name" --device cuda --out "docs/results/$name"
done
rm -rf docs/results/r1-mnist
reproduce r1-mnist --device cuda ${MNIST:+--data-dir "$MNIST"} --out docs/results/r1-mnist
rm -f docs/results/{condensation,sample-size,teacher-student,r1-mnist}/report.html

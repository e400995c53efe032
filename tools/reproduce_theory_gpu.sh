#!/usr/bin/env bash
# The dropout-chapter reproductions slow on a small CPU, in their full setting on one CUDA GPU (a few
# minutes on an H100), written into docs/results/. On one thread of a 2-core Xeon (2026-11-29):
# condensation 17 min, teacher-student 4 min and sample-size 71 min (all three stored from CPU runs now);
# r1-mnist (12 nets 784-1000-10, 20,000 full-batch steps each) would take hours. Usage: tools/reproduce_theory_gpu.sh [MNIST_IDX_FOLDER]   (from the repository
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

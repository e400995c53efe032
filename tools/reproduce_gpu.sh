#!/usr/bin/env bash
# The reproductions slow on a small CPU, in their full setting on one CUDA GPU, written into
# docs/results/. Usage: tools/reproduce_gpu.sh [MNIST_IDX_FOLDER]   (run from the repository root;
# without the folder, seed000 uses mnist-5k's real digits and is marked reduced).
# On one thread of a 2-core Xeon (2026-11-29) l1-l4 took 66 min, interpolation 29 min, dropout-table
# 3 min and seed000 26 min on mnist-5k (2 workers): all four are stored from CPU runs now.
# Then: python -m reglab.reproduce.summary > docs/reproduce.md
set -euo pipefail
PY=${PY:-.venv/bin/python}
MNIST=${1:-}
CIFAR=${CIFAR:-}  # a folder with the CIFAR-10/100 binary files, if available
reproduce() { PYTHONPATH=src "$PY" -c "import sys; from reglab.cli import main; sys.argv[0] = 'reglab'; main()" reproduce "$@"; }
reproduce l1-l4 --device cuda --out docs/results/l1-l4
reproduce interpolation --device cuda --out docs/results/interpolation
reproduce dropout-table --device cuda ${CIFAR:+--data-dir "$CIFAR"} --out docs/results/dropout-table
reproduce seed000 --device cuda ${MNIST:+--data-dir "$MNIST"} --out reproductions/seed000
cp reproductions/seed000/{README.md,results.json,seed000_test_acc.png} docs/results/seed000/
rm -f docs/results/*/report.html

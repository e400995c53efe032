#!/usr/bin/env bash
# Install PyTorch into the given Python: keep one that is already there; on a machine with an NVIDIA
# GPU take PyPI's default (CUDA) build; otherwise a CPU build — a local wheel when pip's configured
# find-links has one, else PyTorch's CPU index — never the multi-GB CUDA build on a CPU-only machine.
set -euo pipefail
py=${1:?usage: install_torch.sh PYTHON}
version=${TORCH_VERSION:-2.13.0}
if "$py" -c "import torch" 2>/dev/null; then
  echo "torch $("$py" -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$py" -m pip install -q "torch==$version"
elif "$py" -m pip install -q --no-index --no-deps "torch==$version" 2>/dev/null; then
  "$py" -m pip install -q "torch==$version"  # its dependencies; torch itself is already satisfied
  echo "installed torch $version (CPU) from a local wheel"
else
  "$py" -m pip install -q "torch==$version" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
fi

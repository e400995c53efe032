#!/usr/bin/env bash
# Install PyTorch into the given Python: keep one that is already there; on a machine with an NVIDIA
# GPU take PyPI's default (CUDA) build; otherwise a CPU build — a local wheel when pip's configured
# find-links has one, else from PyTorch's CPU index. Only where that index cannot be reached does a
# CPU-only machine get PyPI's default build (the CUDA one, several GB), with a warning saying so.
set -euo pipefail
py=${1:?usage: install_torch.sh PYTHON}
version=${TORCH_VERSION:-2.13.0}
cpu_index=https://download.pytorch.org/whl/cpu
if "$py" -c "import torch" 2>/dev/null; then
  echo "torch $("$py" -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$py" -m pip install -q "torch==$version"
elif "$py" -m pip install -q --no-index --no-deps "torch==$version" 2>/dev/null \
  || "$py" -m pip install -q --no-deps --retries 1 --timeout 30 --index-url "$cpu_index" "torch==$version" 2>/dev/null; then
  # torch alone came from a local wheel or the CPU index (never PyPI, whose Linux build is CUDA's);
  # now its dependencies from the usual indexes (the installed CPU build satisfies torch==$version)
  "$py" -m pip install -q "torch==$version"
  echo "installed torch $version (CPU build)"
else
  echo "warning: no local torch $version wheel and $cpu_index is unreachable:" \
       "installing PyPI's default build (CUDA, several GB)" >&2
  "$py" -m pip install -q "torch==$version"
fi

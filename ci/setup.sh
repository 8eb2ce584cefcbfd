#!/usr/bin/env bash
# Sets up a fresh machine: build tools, torch (a CPU build unless one is already installed), then medkern
# itself, editable, with the extras its tests and benchmarks use. Re-run after changing C++/CUDA code.
#   MEDKERN_CUDA=AUTO|ON|OFF  build medkern._C_cuda when nvcc is found / always (fail without nvcc) / never
#   MEDKERN_ARCH=native|portable  CPU code for this machine's ISA, or baseline code that runs anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.24" ninja
# An unpinned torch requirement would pull a multi-GB CUDA build; medkern only needs torch>=2.4.
python -c "import torch" 2>/dev/null || python -m pip install --quiet "torch==${MEDKERN_TORCH_VERSION:-2.13.0}"
python -m pip install --quiet --no-build-isolation -e ".[test,bench,numba,data,train,serve]"
python -c "import medkern, sys; from medkern import _native; sys.exit(_native.cpu_error)"

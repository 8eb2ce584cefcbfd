"""Helpers for the CUDA checks that need no GPU, shared by every family's tests: compiling CUDA sources
with nvcc, and running numba.cuda kernels on the simulator in a child process."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def nvcc(cwd: Path, *args: str):
    """Compiles with warnings as errors; skips where nvcc is missing."""
    exe = shutil.which("nvcc")
    if exe is None:
        pytest.skip("nvcc is not on PATH")
    # Run inside a scratch folder: nvcc's implicit #include "cuda_runtime.h" searches the working directory.
    proc = subprocess.run([exe, "-c", "-Werror", "all-warnings", *args, "-o", "out.o"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (cwd / "out.o").stat().st_size > 0


def run_on_cudasim(script: Path, success_line: str):
    """Runs `script` with NUMBA_ENABLE_CUDASIM=1 in a child process (the simulator must be chosen before
    numba is first imported, and a crash there must fail the test, not the run)."""
    pytest.importorskip("numba")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert success_line in proc.stdout

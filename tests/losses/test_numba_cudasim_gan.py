"""The numba.cuda GAN loss kernels, run on the CPU simulator in a child process (the simulator must be
chosen before numba is first imported, and a crash there must fail this test, not the run)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_numba_cuda_gan_kernels_on_the_simulator():
    pytest.importorskip("numba")
    script = Path(__file__).with_name("_numba_cudasim_gan.py")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all simulated GAN loss kernels match torch" in proc.stdout

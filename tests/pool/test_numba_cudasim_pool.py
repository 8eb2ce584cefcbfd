"""The numba.cuda pooling kernels, run on the CPU simulator in a child process (the simulator must be
chosen before numba is first imported, and a crash there must fail this test, not the run)."""
from pathlib import Path

from cuda_checks import run_on_cudasim


def test_numba_cuda_pool_kernels_on_the_simulator():
    run_on_cudasim(Path(__file__).with_name("_numba_cudasim_pool.py"), "all simulated pooling kernels match torch")

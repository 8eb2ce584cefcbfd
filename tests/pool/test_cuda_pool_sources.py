"""CUDA-side pooling checks that need no GPU: the CuPy backend's pooling kernel source and medkern's own
CUDA pooling kernels compile with nvcc (warnings are errors), and the compiled CUDA module, where it was
built, exposes the pooling family.

Numerical correctness on a GPU is covered by the kernel and op tests, which run every backend on CUDA
when a device is present."""
import shutil
import subprocess
from pathlib import Path

import pytest

from medkern import _native
from medkern.backends.cupy_ import pool as cupy_pool

POOL_FUNCTIONS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
                  "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_forward")

CSRC = Path(__file__).resolve().parents[2] / "csrc"


def _nvcc():
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    return nvcc


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_cupy_pool_kernel_source_compiles_with_nvcc(ctype, tmp_path):
    nvcc = _nvcc()
    src = tmp_path / f"medkern_cupy_pool_{ctype}.cu"
    src.write_text(cupy_pool.source_for(ctype))
    # Run inside tmp_path: nvcc's implicit #include "cuda_runtime.h" searches the working directory.
    proc = subprocess.run([nvcc, "-c", "-x", "cu", "-Werror", "all-warnings", src.name, "-o", "kernels.o"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "kernels.o").stat().st_size > 0


def test_cupy_pool_source_defines_every_kernel():
    for name in cupy_pool.KERNELS:
        assert f'extern "C" __global__ void {name}(' in cupy_pool.SOURCE


def test_native_cuda_pool_kernels_compile_with_nvcc(tmp_path):
    """csrc/cuda/pool2d.cu with the module's own flags (fast math included), warnings as errors."""
    nvcc = _nvcc()
    src = CSRC / "cuda" / "pool2d.cu"
    if not src.is_file():
        pytest.skip("the C++ sources are not next to the tests")
    proc = subprocess.run([nvcc, "-c", "-std=c++17", "-O3", "--use_fast_math", "-I", str(CSRC), "-Werror",
                           "all-warnings", str(src), "-o", "pool2d.o"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "pool2d.o").stat().st_size > 0


def test_cuda_module_exposes_the_pooling_family():
    if _native._C_cuda is None:
        pytest.skip(_native.cuda_error)
    missing = [name for name in POOL_FUNCTIONS if not hasattr(_native._C_cuda, name)]
    assert not missing, f"medkern._C_cuda lacks {missing}"
    # The fused backward-from-input is CPU-only: on CUDA the ops layer composes forward and backward.
    assert not hasattr(_native._C_cuda, "max_pool2d_backward_from_input")

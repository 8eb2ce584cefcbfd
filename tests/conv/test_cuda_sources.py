"""CUDA-side checks that need no GPU: the CuPy backend's kernel source compiles with nvcc, and the
compiled CUDA module (where it was built) loads and answers its introspection calls without a driver.

Numerical correctness on a GPU is covered by test_conv2d_kernels.py, which runs every backend on CUDA
when a device is present."""
import shutil
import subprocess

import pytest

from medkern import _native
from medkern.backends import cupy_
from medkern.backends.cupy_ import conv as cupy_conv


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_cupy_kernel_source_compiles_with_nvcc(ctype, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    src = tmp_path / f"medkern_cupy_conv_{ctype}.cu"
    src.write_text(cupy_conv.source_for(ctype))
    # Run inside tmp_path: nvcc's implicit #include "cuda_runtime.h" searches the working directory.
    proc = subprocess.run([nvcc, "-c", "-x", "cu", "-Werror", "all-warnings", src.name, "-o", "kernels.o"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "kernels.o").stat().st_size > 0


def test_cupy_source_defines_every_kernel():
    for name in cupy_conv.KERNELS:
        assert f'extern "C" __global__ void {name}(' in cupy_conv.SOURCE


def test_cupy_availability_never_raises():
    reasons = cupy_.availability()
    assert set(reasons) == {"cuda"}
    why = reasons["cuda"]
    assert why is None or (isinstance(why, str) and why)


def test_cuda_module_introspection_without_a_gpu():
    if _native._C_cuda is None:
        pytest.skip(_native.cuda_error)
    count = _native._C_cuda.device_count()
    assert isinstance(count, int) and count >= 0
    info = _native._C_cuda.build_info()
    assert set(info) >= {"cuda_archs", "cuda_runtime_version"}
    assert isinstance(info["cuda_archs"], str) and info["cuda_archs"]
    assert isinstance(info["cuda_runtime_version"], int) and info["cuda_runtime_version"] > 0

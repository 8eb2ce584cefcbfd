"""CUDA-side checks of the recurrent family that need no GPU: the CuPy kernel source and medkern's own
CUDA kernels compile with nvcc (warnings are errors), and the built CUDA module exposes the family.
Numerical checks on a GPU are the module tests, which run every backend on CUDA when a device is present;
the numba.cuda kernels run on the simulator (test_numba_cudasim_rnn.py)."""
import pytest

from medkern import _native
from medkern.backends.cupy_ import rnn as cupy_rnn

from cuda_checks import CSRC, nvcc

@pytest.mark.parametrize("ctype", ["float", "double"])
def test_cupy_rnn_source_compiles_withnvcc(ctype, tmp_path):
    (tmp_path / "kernels.cu").write_text(cupy_rnn.source_for(ctype))
    nvcc(tmp_path, "-x", "cu", "kernels.cu")
    for name in cupy_rnn.KERNELS:
        assert f'extern "C" __global__ void {name}(' in cupy_rnn.SOURCE


@pytest.mark.parametrize("source", ["lstm_forward.cu", "lstm_backward.cu", "gru_forward.cu", "gru_backward.cu"])
def test_native_rnn_cuda_kernels_compile_with_the_module_flags(source, tmp_path):
    src = CSRC / "cuda" / source
    if not src.is_file():
        pytest.skip("the C++ sources are not next to the tests")
    nvcc(tmp_path, "-std=c++17", "-O3", "--use_fast_math", "-I", str(CSRC), str(src))


def test_cuda_module_exposes_the_rnn_family():
    if _native._C_cuda is None:
        pytest.skip(_native.cuda_error)
    assert hasattr(_native._C_cuda, "rnn_forward") and hasattr(_native._C_cuda, "rnn_backward")

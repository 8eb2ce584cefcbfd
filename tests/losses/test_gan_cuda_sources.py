"""The GAN loss family's CUDA code without a GPU: the CuPy kernel source and medkern's own kernels
compile with nvcc (warnings are errors, the module's flags), and the CUDA module, where built, exposes
the family."""
import pytest

from medkern import _native
from medkern.backends.cupy_ import gan_loss as cupy_gan_loss
from cuda_checks import CSRC, nvcc


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_cupy_source_compiles_withnvcc(ctype, tmp_path):
    (tmp_path / "kernels.cu").write_text(cupy_gan_loss.source_for(ctype))
    nvcc(tmp_path, "-x", "cu", "kernels.cu")


def test_native_cuda_kernels_compile_with_the_module_flags(tmp_path):
    src = CSRC / "cuda" / "gan_loss.cu"
    if not src.is_file():
        pytest.skip("the C++ sources are not next to the tests")
    nvcc(tmp_path, "-std=c++17", "-O3", "--use_fast_math", "-I", str(CSRC), str(src))


def test_cuda_module_exposes_the_family():
    if _native._C_cuda is None:
        pytest.skip(_native.cuda_error)
    for name in ("gan_loss_forward", "gan_penalty_forward", "gan_loss_workspace_size", "gan_penalty_workspace_size"):
        assert hasattr(_native._C_cuda, name)

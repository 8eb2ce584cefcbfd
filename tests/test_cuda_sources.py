"""CUDA-side checks that need no GPU: every family's CuPy kernel source and medkern's own CUDA kernels
compile with nvcc (warnings are errors), and the compiled CUDA module, where it was built, loads without
a driver and exposes every family.

Numerical correctness on a GPU is covered by the kernel and op tests of each family, which run every
backend on CUDA whenever a device is present."""
import pytest

from medkern import _native
from medkern.backends import cupy_
from medkern.backends.cupy_ import conv as cupy_conv, gan_loss as cupy_gan_loss, pool as cupy_pool, rnn as cupy_rnn

from cuda_checks import CSRC, nvcc

CUPY_FAMILIES = {"conv": cupy_conv, "pool": cupy_pool, "rnn": cupy_rnn, "gan_loss": cupy_gan_loss}
MODULE_FUNCTIONS = {
    "conv": ("conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias"),
    "pool": ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
             "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_forward"),
    "rnn": ("rnn_forward", "rnn_backward"),
    "gan_loss": ("gan_loss_forward", "gan_penalty_forward", "gan_loss_workspace_size", "gan_penalty_workspace_size"),
}
# Every CUDA translation unit of the module (empty where the sources are not next to the tests).
CUDA_SOURCES = sorted(p.name for p in (CSRC / "cuda").glob("*.cu"))


@pytest.mark.parametrize("ctype", ["float", "double"])
@pytest.mark.parametrize("family", list(CUPY_FAMILIES))
def test_cupy_kernel_source_compiles_withnvcc(family, ctype, tmp_path):
    (tmp_path / "kernels.cu").write_text(CUPY_FAMILIES[family].source_for(ctype))
    nvcc(tmp_path, "-x", "cu", "kernels.cu")


@pytest.mark.parametrize("family", [f for f, m in CUPY_FAMILIES.items() if hasattr(m, "KERNELS")])
def test_cupy_source_defines_every_kernel(family):
    mod = CUPY_FAMILIES[family]
    for name in mod.KERNELS:
        assert f'extern "C" __global__ void {name}(' in mod.SOURCE


@pytest.mark.parametrize("source", CUDA_SOURCES)
def test_native_cuda_kernels_compile_with_the_module_flags(source, tmp_path):
    src = CSRC / "cuda" / source
    nvcc(tmp_path, "-std=c++17", "-O3", "--use_fast_math", "-I", str(CSRC), str(src))


def test_cupy_availability_never_raises():
    why = cupy_.availability()["cuda"]
    assert why is None or (isinstance(why, str) and why)


def test_cuda_module_loads_without_a_gpu_and_exposes_every_family():
    if _native._C_cuda is None:
        pytest.skip(_native.cuda_error)
    count = _native._C_cuda.device_count()
    assert isinstance(count, int) and count >= 0
    info = _native._C_cuda.build_info()
    assert isinstance(info["cuda_archs"], str) and info["cuda_archs"]
    assert isinstance(info["cuda_runtime_version"], int) and info["cuda_runtime_version"] > 0
    missing = [f for names in MODULE_FUNCTIONS.values() for f in names if not hasattr(_native._C_cuda, f)]
    assert not missing, f"medkern._C_cuda lacks {missing}"

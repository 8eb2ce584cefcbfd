"""The numba.cuda conv kernels on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), in a child process: the
variable must be set before numba is first imported, and the rest of this session uses numba on the
CPU. A crash or a hang there fails this test instead of the run. See _numba_cudasim_check.py (planes)
and _numba_cudasim_conv3d.py (volumes)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_checks import run_on_cudasim


def test_numba_cuda_conv2d_kernels_on_the_simulator():
    pytest.importorskip("numba")
    here = Path(__file__).resolve()
    python_dir = str(here.parents[2] / "python")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (python_dir, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(here.with_name("_numba_cudasim_check.py"))], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all simulated conv2d kernels match torch" in proc.stdout


def test_numba_cuda_conv2d_kernels_compile_to_ptx():
    """The real CUDA target, without a GPU: numba compiles each kernel to PTX (typing errors the simulator
    cannot see), and a float32 kernel computes in float32 only. Needs NVVM (a CUDA toolkit), not a driver."""
    numba = pytest.importorskip("numba")
    import numpy as np

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("NUMBA_ENABLE_CUDASIM is set: the real CUDA target is not loaded")
    from numba import cuda, types
    from numba.cuda.cudadrv.error import NvvmSupportError

    from medkern.backends.numba_cuda import conv

    for dtype in (np.float32, np.float64):
        kernels = conv._kernels(np.dtype(dtype))
        scalar = numba.from_dtype(np.dtype(dtype))
        a5, a4, a1, i = (types.Array(scalar, 5, "C"), types.Array(scalar, 4, "C"), types.Array(scalar, 1, "C"),
                         types.int64)
        geometry = (i,) * 10  # stride, padding, dilation per axis (depth, height, width), groups
        signatures = {"forward": (a5, a5, a1, types.boolean, a5) + geometry + (i, scalar),  # + activation, slope
                      "grad_input": (a5, a5, a5) + geometry,
                      "grad_weight": (a5, a5, a5) + geometry,
                      "grad_bias": (a4, a1)}
        for name, sig in signatures.items():
            try:
                ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, sig, cc=(7, 5))
            except NvvmSupportError as exc:
                pytest.skip(f"no NVVM to compile with: {exc}")
            other = ".f64" if dtype == np.float32 else ".f32"
            assert other not in ptx, f"{np.dtype(dtype).name} {name}: PTX computes in {other[1:]} too"


def test_numba_cuda_conv3d_kernels_on_the_simulator():
    run_on_cudasim(Path(__file__).with_name("_numba_cudasim_conv3d.py"), "all simulated conv3d kernels match torch")

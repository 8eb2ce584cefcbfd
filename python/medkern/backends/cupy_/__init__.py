"""The ``cupy`` backend: the conv2d family as CuPy raw kernels (compiled with NVRTC on first use), for
CUDA tensors only. The kernels are a direct formulation, independent of medkern's own CUDA code, which
makes this backend a cross-check for it and a GPU path where medkern was built without nvcc.

CuPy is optional: nothing here imports it at module import time.
"""
from __future__ import annotations


def availability() -> dict[str, str | None]:
    # Every failure is a reason, never an exception: a broken CuPy install must not break medkern.
    try:
        import cupy
    except ModuleNotFoundError:
        return {"cuda": "cupy is not installed (pip install 'medkern[cupy]')"}
    except Exception as exc:  # noqa: BLE001 - e.g. a CuPy wheel built for another CUDA major version
        return {"cuda": f"cupy failed to import: {type(exc).__name__}: {exc}"}
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, driver too old, ...
        return {"cuda": f"cupy cannot query CUDA devices: {type(exc).__name__}: {exc}"}
    if count <= 0:
        return {"cuda": "cupy sees no CUDA device"}
    return {"cuda": None}

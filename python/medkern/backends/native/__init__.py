"""The ``native`` backend: medkern's own C++ (``_C``) and CUDA (``_C_cuda``) kernels."""
from __future__ import annotations

from ... import _native


def availability() -> dict[str, str | None]:
    cuda: str | None = _native.cuda_error
    if cuda is None:
        count = _native._C_cuda.device_count()
        cuda = None if count > 0 else "medkern._C_cuda is built but no CUDA device is visible"
    return {"cpu": _native.cpu_error, "cuda": cuda}

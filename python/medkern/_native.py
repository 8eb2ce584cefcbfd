"""The compiled modules. ``_C`` (CPU) is always built; ``_C_cuda`` only where nvcc was found, so its
absence is recorded with the reason rather than raised."""
from __future__ import annotations

try:
    from . import _C  # noqa: F401
    cpu_error: str | None = None
except ImportError as exc:  # a source checkout that was never built
    _C = None
    cpu_error = f"medkern._C is not built ({exc}); install with `pip install .`"

try:
    from . import _C_cuda  # noqa: F401
    cuda_error: str | None = None
except ImportError as exc:
    _C_cuda = None
    cuda_error = f"medkern._C_cuda was not built (no nvcc at build time, or MEDKERN_CUDA=OFF): {exc}"


def require_cpu():
    if _C is None:
        raise RuntimeError(cpu_error)
    return _C

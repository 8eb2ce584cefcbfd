"""Output allocation for the ops. With MEDKERN_POISON=1 (the test suite sets it) every output buffer is
filled with NaN (int64 outputs with -1) before a kernel runs, so an element a kernel forgets to write
fails the comparison.

Large CPU outputs come from medkern's cache of output buffers (``csrc/bindings/host_cache.h``): a fresh
large tensor costs page faults that can outweigh the kernel writing it, and training asks for the same
sizes every step. ``MEDKERN_CPU_CACHE_MB=0`` turns the cache off; ``medkern.empty_cache()`` frees it."""
from __future__ import annotations

import math
import os

import torch

from .. import _native

POISON = os.environ.get("MEDKERN_POISON", "") == "1"
CACHED_BYTES_AT_LEAST = 1 << 20  # below this, glibc's heap reuses freed memory without new page faults
_CACHED_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64"}
_cache = _native._C if _native._C is not None and _native._C.host_cache_enabled() else None


def _cached(shape, dtype: torch.dtype):
    """A tensor from the output cache when it serves this request (CPU, large enough), else None."""
    name = _CACHED_DTYPES.get(dtype)
    if name is not None and math.prod(shape) * dtype.itemsize >= CACHED_BYTES_AT_LEAST:
        return torch.from_dlpack(_cache.host_cache_empty(list(shape), name))
    return None


def _poisoned(out: torch.Tensor) -> torch.Tensor:
    return out.fill_(float("nan") if out.dtype.is_floating_point else -1)


def empty(shape, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    if dtype is None:
        dtype = like.dtype
    out = _cached(shape, dtype) if _cache is not None and like.is_cpu else None
    if out is None:
        out = like.new_empty(shape, dtype=dtype)  # (like.device for torch.empty costs more than the allocation)
    return _poisoned(out) if POISON else out


def empty_like(t: torch.Tensor) -> torch.Tensor:
    """``empty(t.shape, t)``, contiguous whatever ``t``'s strides, by the cheapest route (the per-step
    fast paths call this for every output)."""
    # The size test first, and the cheapest one (nbytes): a step's small outputs skip the cache lookup
    # (1.5 us of a 20 us cell step).
    big = t.nbytes >= CACHED_BYTES_AT_LEAST and _cache is not None and t.is_cpu
    out = _cached(t.shape, t.dtype) if big else None
    if out is None:
        out = torch.empty_like(t, memory_format=torch.contiguous_format)
    return _poisoned(out) if POISON else out


def empty_cache() -> None:
    """Frees the cached CPU output buffers that no tensor uses (memory in use is unaffected)."""
    if _native._C is not None:
        _native._C.host_cache_release()


def cache_info() -> dict:
    """Bytes and blocks held by the CPU output cache, in use and free, and its hit/miss counts."""
    return dict(_native._C.host_cache_info()) if _native._C is not None else {}

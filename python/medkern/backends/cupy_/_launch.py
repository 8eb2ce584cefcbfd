"""What the cupy backend's families share: CUDA sources written over ``scalar_t`` and compiled per
element type, grid sizing, and launching on torch's current stream with zero-copy views."""
from __future__ import annotations

import contextlib
import functools

import torch

THREADS = 256
MAX_BLOCKS = 1 << 20  # the kernels loop over larger outputs

_CTYPES = {torch.float32: "float", torch.float64: "double"}


class Kernels:
    """The kernels of one CUDA source, compiled once per element type."""

    def __init__(self, source: str):
        self.source = source

    def source_for(self, ctype: str) -> str:
        """The complete CUDA source for one element type (``"float"`` or ``"double"``), as NVRTC gets it."""
        return f"typedef {ctype} scalar_t;\n" + self.source

    @functools.lru_cache(maxsize=None)
    def _module(self, ctype: str):
        import cupy

        # CuPy compiles lazily, once per device, and caches the binary on disk.
        return cupy.RawModule(code=self.source_for(ctype))

    def get(self, name: str, dtype: torch.dtype):
        return self._module(_CTYPES[dtype]).get_function(name)


def blocks(total: int) -> int:
    return min((total + THREADS - 1) // THREADS, MAX_BLOCKS)


@contextlib.contextmanager
def on_torch_stream(t: torch.Tensor):
    """Makes ``t``'s GPU current (for torch, which refuses to export a tensor of another device, and for
    CuPy) and CuPy's current stream torch's current stream there, so the kernels queue behind the torch
    work that produced their inputs and nothing needs synchronising."""
    import cupy

    with torch.cuda.device(t.device), cupy.cuda.Device(t.device.index):
        with cupy.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream):
            yield


def as_cupy(t: torch.Tensor):
    """Zero-copy CuPy view of a contiguous CUDA tensor (autograd state does not matter to a kernel)."""
    import cupy

    return cupy.from_dlpack(t.detach())

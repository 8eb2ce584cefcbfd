"""Facts recorded with every benchmark row, and the machine's two floors."""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

from .. import _native


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else cpu_model()


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=None)
def cpu_floors(threads: int) -> tuple[float, float]:
    """(float32 FMA peak in GFLOP/s, copy bandwidth in GB/s counting bytes read plus written)."""
    C = _native.require_cpu()
    return C.measure_fma_peak_gflops(threads, 0.3), C.measure_copy_bandwidth_gbs(threads, 0.5)

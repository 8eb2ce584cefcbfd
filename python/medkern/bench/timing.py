"""Timing that survives a shared, noisy machine: both contenders run in the same process, alternating
round by round, each round long enough to dwarf the timer; the median over rounds is reported."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _calibrate(fn: Callable[[], object], device: str, min_round_s: float) -> int:
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    dt = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(min_round_s / dt))


def _round(fn: Callable[[], object], calls: int, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / calls


def compare(fns: dict[str, Callable[[], object]], *, device: str = "cpu", repeats: int = 7,
            min_round_s: float = 0.05) -> dict[str, float]:
    """Median seconds per call of each function, measured in interleaved rounds."""
    calls = {name: _calibrate(fn, device, min_round_s) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_round(fn, calls[name], device))
    return {name: statistics.median(ts) for name, ts in times.items()}

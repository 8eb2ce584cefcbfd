"""Runs benchmark cases, prints the table and appends CSV rows."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import _native, backends
from . import conv, gan_loss, machine, networks, pool, rnn, training
from .results import append_csv
from .timing import compare

CSV_FIELDS = ["op", "case", "backend", "device", "shape", "dtype", "medkern_ms", "torch_ms", "ratio",
              "flop_floor_ms", "byte_floor_ms", "device_name", "threads", "commit"]


def _threads(device: str) -> int:
    return _native._C.num_threads() if device == "cpu" and _native._C is not None else torch.get_num_threads()


FAMILIES = {"conv": conv.CASES, "pool": pool.CASES, "gan_loss": gan_loss.CASES, "rnn": rnn.CASES}
# Whole-network inference against torch.compile and ONNX Runtime: minutes of compiling and exporting, so it is not
# part of the default (all layer families) run and runs only when named.
NETWORKS = "networks"
# Whole-network training steps against torch eager, torch.compile, medkern.patch and the medkern backend: likewise
# only when named.
TRAINING = "training"


def _floor_ms(amount: float, rate: float) -> float:
    return amount / rate * 1e3 if amount else float("nan")


def run(*, device: str = "cpu", backend: str | None = None, select: str = "", family: str = "", repeats: int = 7,
        min_round_s: float = 0.05, csv_path: str | os.PathLike | None = None, dtype=torch.float32,
        include_overhead: bool = True, print_fn=print) -> list[dict]:
    backend = backend or backends.current()
    if family == NETWORKS:
        if dtype != torch.float32:
            raise ValueError(f"the {NETWORKS} family runs float32 only (its variants are checked against float64)")
        with backends.use(backend):
            return networks.run(device=device, select=select, repeats=repeats, min_round_s=min_round_s,
                                csv_path=csv_path, backend=backend, print_fn=print_fn)
    if family == TRAINING:
        if dtype != torch.float32:
            raise ValueError(f"the {TRAINING} family runs float32 only (its variants are checked against float64)")
        with backends.use(backend):
            return training.run(device=device, select=select, repeats=repeats, min_round_s=min_round_s,
                                csv_path=csv_path, print_fn=print_fn)
    cases = [c for name, cs in FAMILIES.items() if family in ("", name) for c in cs if select in c.name]
    threads = _threads(device)
    peak, bandwidth = machine.cpu_floors(threads) if device == "cpu" else (float("nan"), float("nan"))
    itemsize = torch.empty((), dtype=dtype).element_size()
    print_fn(f"# {machine.device_name(device)}, {threads} threads, backend {backend}, {dtype}; "
             f"floors: FMA peak {peak:.0f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s; "
             f"median of {repeats} interleaved rounds; ratio = torch / medkern (>1: medkern faster)")
    header = f"{'case':<26} {'shape':<34} {'medkern ms':>11} {'torch ms':>10} {'ratio':>6} {'FLOP floor':>10} {'byte floor':>10}"
    print_fn(header)
    rows = []
    commit = machine.commit()
    with backends.use(backend):
        for case in cases:
            medkern_fn, torch_fn = case.build(device, dtype)
            t = compare({"medkern": medkern_fn, "torch": torch_fn}, device=device, repeats=repeats,
                        min_round_s=min_round_s)
            row = {
                "op": case.op,
                "case": case.name, "backend": backend, "device": device, "shape": case.shape,
                "dtype": str(dtype).replace("torch.", ""),
                "medkern_ms": t["medkern"] * 1e3, "torch_ms": t["torch"] * 1e3,
                "ratio": t["torch"] / t["medkern"],
                "flop_floor_ms": _floor_ms(case.flops(), peak * 1e9),
                "byte_floor_ms": _floor_ms(case.bytes(itemsize), bandwidth * 1e9),
                "device_name": machine.device_name(device), "threads": threads, "commit": commit,
            }
            rows.append(row)
            print_fn(f"{case.name:<26} {case.shape:<34} {row['medkern_ms']:>11.3f} {row['torch_ms']:>10.3f} "
                     f"{row['ratio']:>6.2f} {row['flop_floor_ms']:>10.3f} {row['byte_floor_ms']:>10.3f}")
        if include_overhead and family in ("", "conv") and select in conv.OVERHEAD_CASE.name:
            rows.append(_overhead(device, dtype, repeats, min_round_s, backend, threads, commit, print_fn))
        if (include_overhead and family in ("", "conv") and select in conv.SCALING_CASE.name and device == "cpu"
                and backend == "native" and threads > 1):
            rows.append(_thread_scaling(dtype, repeats, min_round_s, threads, commit, print_fn))
    if csv_path:
        append_csv(Path(csv_path), CSV_FIELDS, rows, ".4f")
    return rows


def _thread_scaling(dtype, repeats, min_round_s, threads, commit, print_fn) -> dict:
    """medkern's native kernel on one thread against all of them, interleaved. In its CSV row the
    ``torch_ms`` column holds the one-thread medkern time, so ``ratio`` is the speed-up."""
    case = conv.SCALING_CASE
    medkern_fn, _ = case.build("cpu", dtype)
    C = _native._C

    def on(n):
        def call():
            C.set_num_threads(n)
            return medkern_fn()
        return call

    try:
        t = compare({"one": on(1), "all": on(threads)}, device="cpu", repeats=repeats, min_round_s=min_round_s)
    finally:
        C.set_num_threads(threads)
    print_fn(f"thread scaling of {case.name} ({case.shape}): 1 thread {t['one'] * 1e3:.3f} ms, {threads} threads "
             f"{t['all'] * 1e3:.3f} ms: {t['one'] / t['all']:.2f}x")
    return {"op": "conv2d_thread_scaling", "case": f"{case.name}_1_vs_{threads}_threads", "backend": "native",
            "device": "cpu", "shape": case.shape, "dtype": str(dtype).replace("torch.", ""),
            "medkern_ms": t["all"] * 1e3, "torch_ms": t["one"] * 1e3, "ratio": t["one"] / t["all"],
            "flop_floor_ms": float("nan"), "byte_floor_ms": float("nan"),
            "device_name": machine.device_name("cpu"), "threads": threads, "commit": commit}


def _overhead(device, dtype, repeats, min_round_s, backend, threads, commit, print_fn) -> dict:
    """Per-call cost at a tiny shape: the fast path, the custom op through torch's dispatcher, and torch."""
    case = conv.OVERHEAD_CASE
    medkern_fn, torch_fn = case.build(device, dtype)
    x = torch.randn(case.N, case.C, case.H, case.H, dtype=dtype, device=device)
    w = torch.randn(case.K, case.C, case.R, case.R, dtype=dtype, device=device)
    b = torch.randn(case.K, dtype=dtype, device=device)
    p = [case.padding] * 4

    def dispatcher():
        with torch.no_grad():
            return torch.ops.medkern.conv2d(x, w, b, [1, 1], p, [1, 1], 1)

    t = compare({"medkern": medkern_fn, "dispatcher": dispatcher, "torch": torch_fn}, device=device,
                repeats=repeats, min_round_s=min_round_s)
    print_fn(f"per-call overhead at {case.shape}: medkern fast path {t['medkern'] * 1e6:.1f} us, "
             f"through torch.ops.medkern (dispatcher) {t['dispatcher'] * 1e6:.1f} us, torch {t['torch'] * 1e6:.1f} us")
    return {"op": "conv2d", "case": case.name, "backend": backend, "device": device, "shape": case.shape,
            "dtype": str(dtype).replace("torch.", ""), "medkern_ms": t["medkern"] * 1e3,
            "torch_ms": t["torch"] * 1e3, "ratio": t["torch"] / t["medkern"], "flop_floor_ms": float("nan"),
            "byte_floor_ms": float("nan"), "device_name": machine.device_name(device), "threads": threads,
            "commit": commit}

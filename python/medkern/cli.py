"""The ``medkern`` command line: ``info``, ``bench`` and ``demo``."""
from __future__ import annotations

import argparse
import sys

import torch


def _info(args) -> int:
    import medkern
    from medkern import _native, backends

    print(f"medkern {medkern.__version__} (torch {torch.__version__}, python {sys.version.split()[0]})")
    if _native._C is not None:
        b = _native._C.build_info()
        print(f"CPU module: ISA {b['isa']} ({b['vector_bytes'] * 8}-bit vectors), arch={b['arch']}, "
              f"OpenMP {b['openmp']} with {_native._C.num_threads()} threads, compiler {b['compiler']}")
    else:
        print(f"CPU module: missing: {_native.cpu_error}")
    if _native._C_cuda is not None:
        b = _native._C_cuda.build_info()
        print(f"CUDA module: archs {b['cuda_archs']}, CUDA runtime {b['cuda_runtime_version']}, "
              f"{_native._C_cuda.device_count()} device(s) visible")
    else:
        print(f"CUDA module: missing: {_native.cuda_error}")
    print(f"backend in force: {backends.current()}")
    for status in backends.available().values():
        print(f"  {status}")
    return 0


def _bench(args) -> int:
    from medkern.bench import runner

    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    runner.run(device=args.device, backend=args.backend, select=args.case, family=args.family, repeats=args.repeats,
               min_round_s=args.min_round, csv_path=args.csv, dtype=dtype)
    return 0


def _demo(args) -> int:
    """The main job, for now: what is built, a correctness check of a patched CNN against torch, and the
    benchmarks of every family."""
    import medkern

    _info(args)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(8, 16, 3, stride=2, padding="valid"), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x = torch.randn(4, 1, 28, 28)
    expected = model(x)
    medkern.patch(model)
    got = model(x)
    err = (got - expected).abs().max().item()
    print(f"\npatched CNN vs torch on 4x1x28x28: max abs difference {err:.2e} "
          f"({sum(type(m).__module__.startswith('medkern.') for m in model.modules())} layers swapped)")
    if err > 1e-4:
        print("error: patched model disagrees with torch", file=sys.stderr)
        return 1
    print()
    from medkern.bench import runner

    runner.run(device="cpu", repeats=args.repeats, min_round_s=0.02, csv_path=args.csv)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medkern", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, build flags and backends").set_defaults(func=_info)
    bench = sub.add_parser("bench", help="medkern vs torch, interleaved in one process")
    bench.add_argument("--case", default="", help="run only cases whose name contains this")
    from medkern.bench.runner import FAMILIES

    bench.add_argument("--family", default="", choices=["", *FAMILIES], help="one op family (default: all)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.add_argument("--backend", default=None, help="backend to measure (default: the one in force)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    bench.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the median is reported")
    bench.add_argument("--min-round", type=float, default=0.05, help="seconds per round at least")
    bench.add_argument("--csv", default="bench-results.csv", help="append rows here ('' to skip)")
    bench.set_defaults(func=_bench)
    demo = sub.add_parser("demo", help="the main job: info, a patched-model check and the benchmarks")
    demo.add_argument("--repeats", type=int, default=5)
    demo.add_argument("--csv", default="bench-results.csv")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

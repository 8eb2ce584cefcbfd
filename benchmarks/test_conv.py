"""pytest-benchmark suite for conv2d: the same cases as `medkern bench`, medkern and torch side by side
in one group per case. Run: python -m pytest benchmarks --benchmark-only --benchmark-group-by=group"""
import pytest

from medkern.bench.conv import CASES, OVERHEAD_CASE


@pytest.mark.parametrize("impl", ["medkern", "torch"])
@pytest.mark.parametrize("case", CASES + [OVERHEAD_CASE], ids=lambda c: c.name)
def test_conv2d(benchmark, case, impl):
    import torch

    medkern_fn, torch_fn = case.build("cpu", torch.float32)
    benchmark.group = case.name
    benchmark.extra_info.update(shape=case.shape, gflop=case.flops() / 1e9)
    benchmark(medkern_fn if impl == "medkern" else torch_fn)

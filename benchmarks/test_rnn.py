"""pytest-benchmark suite for the recurrent family: the same cases as `medkern bench --family rnn`."""
import pytest

from medkern.bench.rnn import CASES


@pytest.mark.parametrize("impl", ["medkern", "torch"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rnn(benchmark, case, impl):
    import torch

    medkern_fn, torch_fn = case.build("cpu", torch.float32)
    benchmark.group = case.name
    benchmark.extra_info.update(shape=case.shape)
    benchmark(medkern_fn if impl == "medkern" else torch_fn)

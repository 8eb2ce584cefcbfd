"""pytest-benchmark suite for the GAN losses: the same cases as `medkern bench --family gan_loss`."""
import pytest

from medkern.bench.gan_loss import CASES


@pytest.mark.parametrize("impl", ["medkern", "torch"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_gan_loss(benchmark, case, impl):
    import torch

    medkern_fn, torch_fn = case.build("cpu", torch.float32)
    benchmark.group = case.name
    benchmark.extra_info.update(shape=case.shape)
    benchmark(medkern_fn if impl == "medkern" else torch_fn)

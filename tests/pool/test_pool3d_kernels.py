"""Every backend's 3-d pooling entries against torch in float64, called directly with NaN-poisoned outputs.
Indices must equal torch's exactly (ties and NaNs included). The max backward of a volume is
``max_pool2d_backward`` on (N, C, 1, D*H*W) views (CONTRACT.md), checked here the way the ops call it."""
import pytest
import torch
import torch.nn.functional as F

import medkern
from medkern._geometry import PoolParams
from conftest import TOL, backend_devices, rel_err

from .cases import VOLUME_ADAPTIVE, VOLUME_CASES

ENTRIES = ("max_pool3d_forward", "avg_pool3d_forward", "avg_pool3d_backward", "adaptive_avg_pool3d_forward",
           "adaptive_avg_pool3d_backward", "adaptive_max_pool3d_forward")


@pytest.fixture(params=backend_devices())
def kernels(request):
    name, device = request.param
    mod = medkern.backends.family("pool", device, name)
    missing = [e for e in ENTRIES if not hasattr(mod, e)]
    if missing:
        pytest.skip(f"{name}/{device} lacks {', '.join(missing)}")
    return mod, device


def nan_full(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def same_values(got, want):
    return torch.equal(got.isnan().cpu(), want.isnan().cpu()) and \
        torch.allclose(got.double().cpu().nan_to_num(), want.double().cpu().nan_to_num(), rtol=1e-6, atol=0)


def as_planes(t):
    return t.reshape(t.shape[0], t.shape[1], 1, -1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", VOLUME_CASES, ids=lambda c: c.id())
def test_max_pool3d(kernels, case, dtype):
    k, device = kernels
    x = case.input(dtype, device)
    ref, ref_idx = F.max_pool3d(x.double().cpu(), **case.torch_kwargs(), return_indices=True)
    for with_indices in (True, False):
        out = nan_full(ref.shape, dtype, device)
        idx = torch.full(ref.shape, -5, dtype=torch.int64, device=device) if with_indices else None
        k.max_pool3d_forward(x, out, idx, case.params)
        assert same_values(out, ref)
        if with_indices:
            assert torch.equal(idx.cpu(), ref_idx)
    dy = torch.randn(ref.shape, dtype=dtype, device=device)
    dx = nan_full(x.shape, dtype, device)
    k.max_pool2d_backward(as_planes(dy), as_planes(ref_idx.to(device)), as_planes(dx))
    xr = x.double().cpu().requires_grad_()
    F.max_pool3d(xr, **case.torch_kwargs()).backward(dy.double().cpu())
    assert rel_err(dx, xr.grad) < TOL[dtype] or torch.equal(dx.double().cpu(), xr.grad)


@pytest.mark.parametrize("count_include_pad, divisor_override", [(True, None), (False, None), (True, 5), (False, -3)],
                         ids=["include_pad", "exclude_pad", "divisor_5", "divisor_minus_3"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", [c for c in VOLUME_CASES if c.fits_avg()], ids=lambda c: c.id())
def test_avg_pool3d(kernels, case, dtype, count_include_pad, divisor_override):
    k, device = kernels
    x = case.input(dtype, device, specials=False)
    xr = x.double().cpu().requires_grad_()
    ref = F.avg_pool3d(xr, **case.torch_kwargs(with_dilation=False), count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
    out = nan_full(ref.shape, dtype, device)
    k.avg_pool3d_forward(x, out, case.params, count_include_pad, divisor_override)
    assert rel_err(out, ref) < TOL[dtype]
    dy = torch.randn(ref.shape, dtype=dtype, device=device)
    ref.backward(dy.double().cpu())
    dx = nan_full(x.shape, dtype, device)
    k.avg_pool3d_backward(dy, dx, case.params, count_include_pad, divisor_override)
    assert rel_err(dx, xr.grad) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape, size", VOLUME_ADAPTIVE, ids=lambda v: "x".join(map(str, v)))
def test_adaptive_pools3d(kernels, shape, size, dtype):
    k, device = kernels
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64).round().to(dtype=dtype, device=device)  # ties
    x_avg = x.clone()
    x.view(-1)[::7] = float("nan")
    xr = x_avg.double().cpu().requires_grad_()
    ref = F.adaptive_avg_pool3d(xr, size)
    out = nan_full(ref.shape, dtype, device)
    k.adaptive_avg_pool3d_forward(x_avg, out)
    assert rel_err(out, ref) < TOL[dtype]
    dy = torch.randn(ref.shape, dtype=dtype, device=device)
    ref.backward(dy.double().cpu())
    dx = nan_full(x.shape, dtype, device)
    k.adaptive_avg_pool3d_backward(dy, dx)
    assert rel_err(dx, xr.grad) < TOL[dtype]

    ref_max, ref_idx = F.adaptive_max_pool3d(x.double().cpu(), size, return_indices=True)
    out = nan_full(ref_max.shape, dtype, device)
    idx = torch.full(ref_max.shape, -5, dtype=torch.int64, device=device)
    k.adaptive_max_pool3d_forward(x, out, idx)
    assert same_values(out, ref_max) and torch.equal(idx.cpu(), ref_idx)


def test_an_infinity_stays_in_its_own_windows(kernels):
    """Sums must start from zero, not from some element times zero (inf * 0 is NaN)."""
    k, device = kernels
    p = PoolParams((2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1))
    x = torch.ones(1, 2, 4, 6, 6, dtype=torch.float64, device=device)
    x[:, :, 0, 0, 0] = float("inf")
    out = nan_full((1, 2, 2, 3, 3), torch.float64, device)
    k.avg_pool3d_forward(x, out, p, True, None)
    assert torch.isinf(out[:, :, 0, 0, 0]).all() and (out.flatten(2)[:, :, 1:] == 1).all()
    k.adaptive_avg_pool3d_forward(x, out)
    assert torch.isinf(out[:, :, 0, 0, 0]).all() and (out.flatten(2)[:, :, 1:] == 1).all()
    dy = torch.ones(1, 2, 2, 3, 3, dtype=torch.float64, device=device)
    dy[:, :, 1, 2, 2] = float("inf")
    dx = nan_full(x.shape, torch.float64, device)
    k.avg_pool3d_backward(dy, dx, p, True, None)
    assert torch.isinf(dx[:, :, 2:, 4:, 4:]).all() and (dx[:, :, :2] == 0.125).all()

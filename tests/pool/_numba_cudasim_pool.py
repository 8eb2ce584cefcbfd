"""Child process of test_numba_cudasim_pool.py: the numba.cuda pooling kernels on the CPU simulator
(NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported), at tiny sizes, against torch in float64,
outputs poisoned with NaN, planes (2-d) then volumes (3-d). Raises on the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medkern.backends.numba_cuda import pool as k  # noqa: E402

g = torch.Generator().manual_seed(0)
x = torch.randn(1, 2, 5, 7, generator=g, dtype=torch.float64).round()  # ties
x[0, 0, 1, 1] = float("nan")
x[0, 1, 2, 3] = float("-inf")
planes = lambda t: t.numpy().reshape(2, *t.shape[2:])  # noqa: E731


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


for kernel, stride, padding, dilation, ceil in [((3, 3), (2, 2), (1, 1), (1, 1), True), ((2, 3), (1, 2), (0, 1), (2, 1), False)]:
    ry, ri = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil, return_indices=True)
    out, idx = np.full(planes(ry).shape, np.nan), np.full(planes(ry).shape, -1, np.int64)
    k.launch_max_pool_forward(planes(x), out, idx, kernel, stride, padding, dilation)
    check(np.array_equal(idx, planes(ri)) and np.allclose(out, planes(ry), equal_nan=True), f"max forward {kernel}")
    gy = np.random.default_rng(1).standard_normal(out.shape)
    gx = np.full((2, 5, 7), np.nan)
    bad = k.launch_max_pool_backward(gy, idx, gx)
    xr = x.clone().requires_grad_()
    F.max_pool2d(xr, kernel, stride, padding, dilation, ceil_mode=ceil).backward(torch.from_numpy(gy).view(ry.shape))
    check(bad == 0 and np.allclose(gx, planes(xr.grad)), f"max backward {kernel}")

bad_idx = np.full((2, 2, 2), 99, np.int64)
check(k.launch_max_pool_backward(np.ones((2, 2, 2)), bad_idx, np.zeros((2, 5, 7))) == 8, "out-of-range indices counted")

xa = torch.randn(1, 2, 5, 7, generator=g, dtype=torch.float64)
for cip, div in [(True, None), (False, None), (True, 3), (False, -2)]:
    ra = F.avg_pool2d(xa, 3, 2, 1, True, cip, div)
    out = np.full(planes(ra).shape, np.nan)
    k.launch_avg_pool_forward(planes(xa), out, (3, 3), (2, 2), (1, 1), cip, div)
    gy = np.random.default_rng(2).standard_normal(out.shape)
    gx = np.full((2, 5, 7), np.nan)
    k.launch_avg_pool_backward(gy, gx, (3, 3), (2, 2), (1, 1), cip, div)
    xr = xa.clone().requires_grad_()
    F.avg_pool2d(xr, 3, 2, 1, True, cip, div).backward(torch.from_numpy(gy).view(ra.shape))
    check(np.allclose(out, planes(ra)) and np.allclose(gx, planes(xr.grad)), f"avg cip={cip} div={div}")

for size in [(2, 3), (1, 1), (4, 8)]:
    ra = F.adaptive_avg_pool2d(xa, size)
    out = np.full((2, *size), np.nan)
    k.launch_adaptive_avg_pool_forward(planes(xa), out)
    gy = np.random.default_rng(3).standard_normal(out.shape)
    gx = np.full((2, 5, 7), np.nan)
    k.launch_adaptive_avg_pool_backward(gy, gx)
    xr = xa.clone().requires_grad_()
    F.adaptive_avg_pool2d(xr, size).backward(torch.from_numpy(gy).view(ra.shape))
    check(np.allclose(out, planes(ra)) and np.allclose(gx, planes(xr.grad)), f"adaptive avg {size}")
    rm, rmi = F.adaptive_max_pool2d(x, size, return_indices=True)
    om, oi = np.full((2, *size), np.nan), np.full((2, *size), -1, np.int64)
    k.launch_adaptive_max_pool_forward(planes(x), om, oi)
    check(np.array_equal(oi, planes(rmi)) and np.allclose(om, planes(rm), equal_nan=True), f"adaptive max {size}")
xi = np.ones((2, 6, 6))
xi[:, 0, 0] = np.inf
out = np.full((2, 3, 3), np.nan)
k.launch_avg_pool_forward(xi, out, (2, 2), (2, 2), (0, 0), True, None)
check(np.isinf(out[:, 0, 0]).all() and (out.reshape(2, -1)[:, 1:] == 1).all(), "an infinity stays in its windows")

# Volumes: (volumes, D, H, W) arrays and three values per geometry field, as the 3-d entries launch them.
xv = torch.randn(1, 2, 3, 4, 5, generator=g, dtype=torch.float64).round()  # ties
xv[0, 0, 1, 1, 1] = float("nan")
xv[0, 1, 0, 2, 3] = float("-inf")
volumes = lambda t: t.numpy().reshape(2, *t.shape[2:])  # noqa: E731
for kernel, stride, padding, dilation, ceil in [((2, 3, 2), (2, 2, 1), (1, 1, 0), (1, 1, 2), True),
                                                ((1, 2, 3), (1, 3, 2), (0, 1, 1), (1, 1, 1), False)]:
    ry, ri = F.max_pool3d(xv, kernel, stride, padding, dilation, ceil_mode=ceil, return_indices=True)
    out, idx = np.full(volumes(ry).shape, np.nan), np.full(volumes(ry).shape, -1, np.int64)
    k.launch_max_pool_forward(volumes(xv), out, idx, kernel, stride, padding, dilation)
    check(np.array_equal(idx, volumes(ri)) and np.allclose(out, volumes(ry), equal_nan=True),
          f"3-d max forward {kernel}")
    gy = np.random.default_rng(4).standard_normal(out.shape)
    gx = np.full((2, 3, 4, 5), np.nan)
    bad = k.launch_max_pool_backward(gy, idx, gx)
    xr = xv.clone().requires_grad_()
    F.max_pool3d(xr, kernel, stride, padding, dilation, ceil_mode=ceil).backward(torch.from_numpy(gy).view(ry.shape))
    check(bad == 0 and np.allclose(gx, volumes(xr.grad)), f"3-d max backward {kernel}")

xva = torch.randn(1, 2, 3, 4, 5, generator=g, dtype=torch.float64)
for cip, div in [(True, None), (False, None), (False, -2)]:
    ra = F.avg_pool3d(xva, (3, 2, 3), (2, 1, 2), (1, 1, 1), True, cip, div)
    out = np.full(volumes(ra).shape, np.nan)
    k.launch_avg_pool_forward(volumes(xva), out, (3, 2, 3), (2, 1, 2), (1, 1, 1), cip, div)
    gy = np.random.default_rng(5).standard_normal(out.shape)
    gx = np.full((2, 3, 4, 5), np.nan)
    k.launch_avg_pool_backward(gy, gx, (3, 2, 3), (2, 1, 2), (1, 1, 1), cip, div)
    xr = xva.clone().requires_grad_()
    F.avg_pool3d(xr, (3, 2, 3), (2, 1, 2), (1, 1, 1), True, cip, div).backward(torch.from_numpy(gy).view(ra.shape))
    check(np.allclose(out, volumes(ra)) and np.allclose(gx, volumes(xr.grad)), f"3-d avg cip={cip} div={div}")

for size in [(2, 3, 2), (1, 1, 1), (4, 2, 7)]:
    ra = F.adaptive_avg_pool3d(xva, size)
    out = np.full((2, *size), np.nan)
    k.launch_adaptive_avg_pool_forward(volumes(xva), out)
    gy = np.random.default_rng(6).standard_normal(out.shape)
    gx = np.full((2, 3, 4, 5), np.nan)
    k.launch_adaptive_avg_pool_backward(gy, gx)
    xr = xva.clone().requires_grad_()
    F.adaptive_avg_pool3d(xr, size).backward(torch.from_numpy(gy).view(ra.shape))
    check(np.allclose(out, volumes(ra)) and np.allclose(gx, volumes(xr.grad)), f"3-d adaptive avg {size}")
    rm, rmi = F.adaptive_max_pool3d(xv, size, return_indices=True)
    om, oi = np.full((2, *size), np.nan), np.full((2, *size), -1, np.int64)
    k.launch_adaptive_max_pool_forward(volumes(xv), om, oi)
    check(np.array_equal(oi, volumes(rmi)) and np.allclose(om, volumes(rm), equal_nan=True),
          f"3-d adaptive max {size}")
print("all simulated pooling kernels match torch")

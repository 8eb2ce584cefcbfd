"""Child process of test_numba_cudasim.py: the numba.cuda conv kernels on volumes, on the CPU simulator
(NUMBA_ENABLE_CUDASIM=1 must be set before numba is first imported), through the array-level launchers
with (N, C, D, H, W) numpy arrays and three geometry values per field, against torch in float64. Every
case is tiny (the simulator runs a Python thread per CUDA thread); outputs are poisoned with NaN. Prints
one line per check and exits non-zero on the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medkern.backends.numba_cuda import conv as kern  # noqa: E402


def check(what, got, want, rtol=1e-10):
    want = want.detach().numpy()
    ok = got.shape == want.shape and np.isfinite(got).all() and np.allclose(got, want, rtol=rtol,
                                                                            atol=rtol * np.abs(want).max())
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        sys.exit(1)


def run(name, x_shape, w_shape, stride, padding, dilation, groups=1, extra=(0, 0, 0), bias=True):
    """One geometry through the three launchers; extra: trailing padding beyond the leading one."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], generator=g, dtype=torch.float64) if bias else None
    pads = [n for lead, more in zip(reversed(padding), reversed(extra)) for n in (lead, lead + more)]
    y = F.conv3d(F.pad(x, pads), w, b, stride, 0, dilation, groups)
    geom = (stride, padding, dilation, groups)
    arr = lambda t: np.ascontiguousarray(t.detach().numpy())  # noqa: E731
    out = np.full(y.shape, np.nan)
    kern.launch_conv_forward(arr(x), arr(w), None if b is None else arr(b), out, *geom)
    check(f"{name}: forward", out, y)
    kern.launch_conv_forward(arr(x), arr(w), None if b is None else arr(b), out, *geom, 2, 0.25)
    check(f"{name}: forward + leaky_relu", out, F.leaky_relu(y, 0.25))
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    want_x, want_w = torch.autograd.grad(y, (x, w), dy)
    dx = np.full(x.shape, np.nan)
    kern.launch_conv_grad_input(arr(dy), arr(w), dx, *geom)
    check(f"{name}: grad_input", dx, want_x)
    dw = np.full(w.shape, np.nan)
    kern.launch_conv_grad_weight(arr(dy), arr(x), dw, *geom)
    check(f"{name}: grad_weight", dw, want_w)


run("3x3x3 pad 1", (1, 2, 3, 4, 4), (2, 2, 3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
run("strided, dilated, grouped", (1, 4, 5, 4, 5), (2, 2, 2, 2, 3), (2, 1, 2), (1, 0, 1), (2, 1, 1), groups=2)
run("'same', even kernel, no bias", (1, 2, 3, 3, 4), (2, 2, 2, 2, 2), (1, 1, 1), (0, 0, 0), (1, 1, 1),
    extra=(1, 1, 1), bias=False)
print("all simulated conv3d kernels match torch")

"""Child process of test_numba_cudasim.py: the numba.cuda conv2d kernels on the CPU simulator, through
their array-level ``launch_*`` functions with numpy arrays, against torch in float64.

NUMBA_ENABLE_CUDASIM=1 must be set before numba is first imported, hence a separate process. The
simulator costs about 150 us per thread (a block of 128 threads is 128 Python threads), so every case is
tiny. Outputs are poisoned with NaN before each launch. Prints one line per check and exits non-zero on
the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medkern import _geometry as geometry  # noqa: E402
from medkern.backends.numba_cuda import conv as kern  # noqa: E402

RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def check(what, got, want, rtol):
    want = want.detach().numpy()
    # atol scaled to the result: float32 sums near zero carry absolute, not relative, rounding error
    ok = (got.shape == want.shape and np.isfinite(got).all()
          and np.allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max()))
    err = np.abs(got - want).max() if got.shape == want.shape else float("nan")
    print(f"{'ok  ' if ok else 'FAIL'} {what}  (max abs err {err:.1e})", flush=True)
    if not ok:
        sys.exit(1)


def run(name, N, C, H, W, K, R, S, stride=(1, 1), padding=(0, 0), extra=(0, 0), dilation=(1, 1), groups=1,
        bias=True, dtype=np.float64, poison_x=False):
    """One geometry through the four launchers. extra: trailing padding beyond the leading one."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    if poison_x:  # an inf and a NaN in batch element 0 must not reach batch element 1
        x[0, 0, 0, 0], x[0, -1, -1, -1] = float("inf"), float("nan")
    x.requires_grad_()
    w = torch.randn(K, C // groups, R, S, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    (ph, pw), (eh, ew) = padding, extra
    # torch's reference for asymmetric padding: pad explicitly, then a padding-0 convolution
    y = F.conv2d(F.pad(x, (pw, pw + ew, ph, ph + eh)), w, b, stride, 0, dilation, groups)
    P, Q = (geometry.conv_out_size(n, k, s, 2 * p + e, d)
            for n, k, s, p, e, d in zip((H, W), (R, S), stride, padding, extra, dilation))
    assert y.shape == (N, K, P, Q), (y.shape, (N, K, P, Q))
    geom = (stride, padding, dilation, groups)
    arr = lambda t: np.ascontiguousarray(t.detach().numpy().astype(dtype))  # noqa: E731
    rtol = RTOL[dtype]

    out = np.full((N, K, P, Q), np.nan, dtype)
    kern.launch_conv_forward(arr(x), arr(w), None if b is None else arr(b), out, *geom)
    if poison_x:
        check(f"{name}: forward, batch element 1", out[1:], y[1:], rtol)
        print(f"ok   {name}: batch element 0 is non-finite as in torch" if not np.isfinite(out[0]).all()
              else f"FAIL {name}: batch element 0 lost its inf/NaN", flush=True)
        if np.isfinite(out[0]).all():
            sys.exit(1)
        return
    check(f"{name}: forward", out, y, rtol)
    for code, slope in ((1, 0.0), (2, 0.25)):  # the fused epilogue: relu, leaky_relu
        kern.launch_conv_forward(arr(x), arr(w), None if b is None else arr(b), out, *geom, code, slope)
        check(f"{name}: forward + activation {code}", out, F.leaky_relu(y, slope), rtol)

    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], dy)
    dx = np.full(x.shape, np.nan, dtype)
    kern.launch_conv_grad_input(arr(dy), arr(w), dx, *geom)
    check(f"{name}: grad_input", dx, want[0], rtol)
    dw = np.full(w.shape, np.nan, dtype)
    kern.launch_conv_grad_weight(arr(dy), arr(x), dw, *geom)
    check(f"{name}: grad_weight", dw, want[1], rtol)
    if bias:
        db = np.full(b.shape, np.nan, dtype)
        kern.launch_conv2d_grad_bias(arr(dy), db)
        check(f"{name}: grad_bias", db, want[2], rtol)


BASE = dict(N=2, C=3, H=5, W=5, K=4, R=3, S=3)
run("3x3 pad 1", **BASE, padding=(1, 1))
run("stride 2", **BASE, stride=(2, 2), padding=(1, 1))
run("dilation 2", **BASE, padding=(2, 1), dilation=(2, 2))
run("groups 2", **{**BASE, "C": 4}, padding=(1, 1), groups=2)
run("'same', even kernel", **{**BASE, "R": 2, "S": 4}, padding=(0, 1), extra=(1, 1))  # one more trailing row/col
run("no bias, mixed strides", **{**BASE, "H": 6, "W": 7}, stride=(2, 1), padding=(0, 1), dilation=(1, 2),
    bias=False)
run("float32", **BASE, padding=(1, 1), dtype=np.float32)
run("inf/NaN stay local", **BASE, padding=(1, 1), poison_x=True)
# grad_bias alone on more elements per channel (2*12*11 = 264) than a block has threads, so every
# thread's share and every level of the tree carry data (cheap: K blocks of BIAS_THREADS threads).
dy = torch.randn(2, 3, 12, 11, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
db = np.full(3, np.nan)
kern.launch_conv2d_grad_bias(dy.numpy(), db)
check("grad_bias, 264 elements per channel", db, dy.sum((0, 2, 3)), RTOL[np.float64])
# A single block: the grid-stride loops and grad_bias's reuse of its shared buffer across channels.
kern.MAX_BLOCKS = 1
run("one block (grid-stride loops)", **BASE, padding=(1, 1))
print("all simulated conv2d kernels match torch")

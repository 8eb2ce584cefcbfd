"""Child process of test_numba_cudasim_conv.py: the numba.cuda conv2d kernels on the CPU simulator
(NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported), at tiny sizes (the simulator runs about
150 us per thread), against torch in float64 with NaN-poisoned outputs. Exits non-zero on a mismatch."""
import importlib.util
import os
import sys
from pathlib import Path

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

_path = Path(__file__).resolve().parents[2] / "python" / "medkern" / "backends" / "numba_cuda" / "conv.py"
_spec = importlib.util.spec_from_file_location("numba_cuda_conv", _path)
k = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k)

# (N, C, H, W, K, R, S, stride, padding, extra trailing padding, dilation, groups, bias)
CASES = [
    (2, 3, 5, 5, 4, 3, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),
    (1, 2, 6, 5, 2, 3, 2, (2, 2), (1, 0), (0, 0), (1, 1), 1, False),
    (1, 2, 7, 6, 2, 2, 3, (1, 1), (0, 1), (0, 0), (2, 2), 1, True),
    (1, 4, 5, 5, 4, 3, 3, (1, 2), (1, 1), (0, 0), (1, 1), 2, True),
    (1, 2, 6, 5, 3, 4, 2, (1, 1), (1, 0), (1, 1), (1, 1), 1, True),  # torch's 'same' with even kernels
]
ok = True
for N, C, H, W, K, R, S, stride, padding, extra, dilation, groups, bias in CASES:
    g = torch.Generator().manual_seed(N * 100 + C * 10 + K)
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(K, C // groups, R, S, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    (ph, pw), (eh, ew) = padding, extra
    y = F.conv2d(F.pad(x, (pw, pw + ew, ph, ph + eh)), w, b, stride, 0, dilation, groups)
    dy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], dy)
    geom = (stride, padding, dilation, groups)

    out = np.full(y.shape, np.nan)
    k.launch_conv2d_forward(x.detach().numpy(), w.detach().numpy(), None if b is None else b.detach().numpy(), out, *geom)
    dx = np.full(x.shape, np.nan)
    k.launch_conv2d_grad_input(dy.numpy(), w.detach().numpy(), dx, *geom)
    dw = np.full(w.shape, np.nan)
    k.launch_conv2d_grad_weight(dy.numpy(), x.detach().numpy(), dw, *geom)
    results = [("forward", out, y.detach()), ("grad_input", dx, grads[0]), ("grad_weight", dw, grads[1])]
    if b is not None:
        db = np.full(b.shape, np.nan)
        k.launch_conv2d_grad_bias(dy.numpy(), db)
        results.append(("grad_bias", db, grads[2]))
    for name, got, want in results:
        good = np.allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {name} N{N} C{C} {H}x{W} K{K} {R}x{S} s{stride} p{padding}+{extra} "
              f"d{dilation} g{groups} bias={bias}")
if not ok:
    sys.exit(1)
print("all simulated conv2d kernels match torch")

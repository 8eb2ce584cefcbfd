"""Child process of test_numba_cudasim_gan.py: the numba.cuda GAN loss kernels on the CPU simulator
(NUMBA_ENABLE_CUDASIM=1 must be set before numba is imported), at tiny sizes, against the plain-torch
formulas in float64, outputs poisoned with NaN. Raises on the first mismatch."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from losses.formulas import penalty  # noqa: E402
from medkern._gan_terms import BCE, HINGE, LINEAR, NONE, SQUARE, GanLossSpec  # noqa: E402
from medkern.backends.numba_cuda import gan_loss as k  # noqa: E402
from medkern.backends.reference.gan_loss import per_sample_losses  # noqa: E402


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


g = torch.Generator().manual_seed(0)
N, M = 3, 300  # 300 > CHUNK: a sample spans two chunks
real, fake = (3 * torch.randn(N, M, generator=g, dtype=torch.float64) for _ in range(2))
weight = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
specs = [GanLossSpec(BCE, 0.9, BCE, 0.0, False, 1 / N), GanLossSpec(SQUARE, 1.0, SQUARE, -1.0, False, 1.0),
         GanLossSpec(HINGE, -1.0, HINGE, 1.0, True, 1 / N), GanLossSpec(NONE, 0.0, LINEAR, -1.0, False, 1.0),
         GanLossSpec(BCE, 1.0, BCE, 0.0, True, 1.0)]
for spec in specs:
    r = None if spec.real_term == NONE else real.clone().requires_grad_()
    f = fake.clone().requires_grad_()
    want = per_sample_losses(r, f, weight, spec)
    # d per_sample / d input with the relativistic batch means held fixed: the kernels' direct term
    direct = per_sample_losses(r, f, weight, spec, detach_shift=True)
    want_grads = torch.autograd.grad(direct.sum(), [t for t in (r, f) if t is not None])
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    ps, total, d_real, d_fake, dsum_r, dsum_f = nan(N), nan(1), nan(N, M), nan(N, M), nan(N), nan(N)
    k.launch_gan_loss_forward(None if r is None else real.numpy(), fake.numpy(), weight.numpy(), ps, total,
                              None if r is None else d_real, d_fake, dsum_r if spec.relativistic else None,
                              dsum_f if spec.relativistic else None, spec)
    ok = np.allclose(ps, want.detach().numpy(), rtol=1e-12) and np.allclose(total[0], want.sum().item(), rtol=1e-12)
    grads = ([d_real] if r is not None else []) + [d_fake]
    ok = ok and all(np.allclose(a, b.numpy(), rtol=1e-12, atol=1e-15) for a, b in zip(grads, want_grads))
    if spec.relativistic:
        ok = ok and np.allclose(dsum_r, d_real.sum(1)) and np.allclose(dsum_f, d_fake.sum(1))
    check(ok, f"loss {spec}")

grad = torch.randn(N, 2, 130, generator=g, dtype=torch.float64)
grad[1] = 0  # the subgradient at a zero norm
for center in (-1.0, 1.0):
    ps, total, coef = np.full(N, np.nan), np.full(1, np.nan), np.full(N, np.nan)
    k.launch_gan_penalty_forward(grad.numpy().reshape(N, -1), ps, total, coef, center, 2.5)
    want = penalty(grad, None if center < 0 else center, 2.5, "none")
    norm = grad.reshape(N, -1).norm(dim=1)
    want_coef = torch.full((N,), 5.0) if center < 0 else torch.where(norm == 0, 0.0, 5.0 * (norm - 1) / norm)
    check(np.allclose(ps, want.numpy(), rtol=1e-12) and np.allclose(total[0], want.sum().item(), rtol=1e-12)
          and np.allclose(coef, want_coef.numpy(), rtol=1e-12), f"penalty center={center}")
print("all simulated GAN loss kernels match torch")

"""GAN loss family on medkern's compiled kernels (see backends/CONTRACT.md, "GAN loss family")."""
from __future__ import annotations

import torch

from ._interop import dl, module_and_stream


def _opt(t):
    return None if t is None else dl(t)


def _workspace(mod, size_of, t):
    """The kernel's scratch: on the GPU a tensor of the size the module asks for; on the CPU None (the
    binding uses host memory of its own, cheaper than a tensor for a loss of a few microseconds)."""
    if t.is_cpu:
        return None
    N = t.shape[0]
    return dl(torch.empty(size_of(N, t.numel() // N), dtype=t.dtype, device=t.device))


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    ref = real if real is not None else fake
    mod, stream, ctx = module_and_stream(ref)
    workspace = _workspace(mod, mod.gan_loss_workspace_size, ref)
    with ctx:
        mod.gan_loss_forward(_opt(real), _opt(fake), _opt(weight), dl(per_sample), dl(total), _opt(d_real),
                             _opt(d_fake), _opt(dsum_real), _opt(dsum_fake), workspace, spec.real_term,
                             spec.real_param, spec.fake_term, spec.fake_param, spec.relativistic, spec.scale, stream)


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    mod, stream, ctx = module_and_stream(grad)
    workspace = _workspace(mod, mod.gan_penalty_workspace_size, grad)
    with ctx:
        mod.gan_penalty_forward(dl(grad), dl(per_sample), dl(total), dl(coef), workspace, center, scale, stream)

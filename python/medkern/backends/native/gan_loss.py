"""GAN loss family on medkern's compiled kernels (see backends/CONTRACT.md, "GAN loss family")."""
from __future__ import annotations

import torch

from ._interop import dl, module_and_stream


def _opt(t):
    return None if t is None else dl(t)


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    ref = real if real is not None else fake
    mod, stream, ctx = module_and_stream(ref)
    N = ref.shape[0]
    workspace = torch.empty(mod.gan_loss_workspace_size(N, ref.numel() // N), dtype=ref.dtype, device=ref.device)
    with ctx:
        mod.gan_loss_forward(_opt(real), _opt(fake), _opt(weight), dl(per_sample), dl(total), _opt(d_real),
                             _opt(d_fake), _opt(dsum_real), _opt(dsum_fake), dl(workspace), spec.real_term,
                             spec.real_param, spec.fake_term, spec.fake_param, spec.relativistic, spec.scale, stream)


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    mod, stream, ctx = module_and_stream(grad)
    N = grad.shape[0]
    workspace = torch.empty(mod.gan_penalty_workspace_size(N, grad.numel() // N), dtype=grad.dtype,
                            device=grad.device)
    with ctx:
        mod.gan_penalty_forward(dl(grad), dl(per_sample), dl(total), dl(coef), dl(workspace), center, scale, stream)

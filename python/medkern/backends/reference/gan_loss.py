"""GAN loss family in plain torch (see backends/CONTRACT.md, "GAN loss family"). ``per_sample_losses`` is
differentiable and is also what the ops layer differentiates for second-order gradients."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._gan_terms import BCE, HINGE, LINEAR, NONE, SQUARE


def _term(term: int, p: float, x: torch.Tensor) -> torch.Tensor:
    if term == BCE:
        return F.binary_cross_entropy_with_logits(x, torch.full_like(x, p), reduction="none")
    if term == SQUARE:
        return 0.5 * (x - p) ** 2
    if term == HINGE:
        return F.relu(1 + p * x)
    assert term == LINEAR
    return p * x


def per_sample_losses(real, fake, weight, spec, detach_shift: bool = False) -> torch.Tensor:
    """``scale * w[n] * loss[n]`` for every sample n. With ``detach_shift`` the relativistic batch means
    are constants, which leaves only the direct derivative (the kernels' d_real / d_fake)."""
    ref = real if real is not None else fake
    N = ref.shape[0]
    loss = torch.zeros(N, dtype=ref.dtype, device=ref.device)
    shift_real = shift_fake = 0.0
    if spec.relativistic:
        shift_real, shift_fake = fake.mean(), real.mean()
        if detach_shift:
            shift_real, shift_fake = shift_real.detach(), shift_fake.detach()
    for x, term, p, shift in ((real, spec.real_term, spec.real_param, shift_real),
                              (fake, spec.fake_term, spec.fake_param, shift_fake)):
        if term != NONE:
            loss = loss + _term(term, p, x - shift).reshape(N, -1).mean(1)
    if weight is not None:
        loss = loss * weight
    return spec.scale * loss


def _term_grad(term: int, p: float, x: torch.Tensor) -> torch.Tensor:
    if term == BCE:
        return torch.sigmoid(x) - p
    if term == SQUARE:
        return x - p
    if term == HINGE:
        return torch.where(1 + p * x > 0, p, 0.0).to(x.dtype)
    return torch.full_like(x, p)


def gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec):
    # Explicit derivatives, not autograd: this also runs inside the custom op, below autograd.
    ps = per_sample_losses(real, fake, weight, spec)
    per_sample.copy_(ps)
    total.copy_(ps.sum())
    ref = real if real is not None else fake
    N = ref.shape[0]
    dscale = spec.scale / (ref.numel() // N) * (weight if weight is not None else torch.ones_like(ps))
    shift_real, shift_fake = (fake.mean(), real.mean()) if spec.relativistic else (0.0, 0.0)
    for x, d, dsum, term, p, shift in ((real, d_real, dsum_real, spec.real_term, spec.real_param, shift_real),
                                       (fake, d_fake, dsum_fake, spec.fake_term, spec.fake_param, shift_fake)):
        if d is not None or dsum is not None:
            g = _term_grad(term, p, x - shift) * dscale.view(-1, *([1] * (x.dim() - 1)))
            if d is not None:
                d.copy_(g)
            if dsum is not None:
                dsum.copy_(g.reshape(N, -1).sum(1))


def penalty_per_sample(grad, center: float, scale: float) -> torch.Tensor:
    """``scale * p[n]``: ``||g_n||^2`` when center < 0, else ``(||g_n|| - center)^2``. Differentiable."""
    flat = grad.reshape(grad.shape[0], -1)
    if center < 0:
        return scale * (flat * flat).sum(1)
    return scale * (flat.norm(dim=1) - center) ** 2


def gan_penalty_forward(grad, per_sample, total, coef, center, scale):
    ps = penalty_per_sample(grad, center, scale)
    per_sample.copy_(ps)
    total.copy_(ps.sum())
    if center < 0:
        coef.fill_(2 * scale)
        return
    # d per_sample[n] / d g_n = coef[n] g_n; where g_n = 0 the coefficient is 0 (torch's subgradient).
    norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
    coef.copy_(torch.where(norm == 0, 0.0, 2 * scale * (norm - center) / norm).to(grad.dtype))

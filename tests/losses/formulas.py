"""The GAN losses as a user writes them in plain torch (the papers' formulas), per sample; the oracle of
the tests. Independent of medkern's reference backend."""
import torch
import torch.nn.functional as F

from medkern import losses as L


def _per_sample(t):
    return t.reshape(t.shape[0], -1).mean(1)


def bce(x, target):
    return _per_sample(F.binary_cross_entropy_with_logits(x, torch.full_like(x, target), reduction="none"))


def reduce(per_sample, weight, reduction):
    if weight is not None:
        per_sample = per_sample * weight
    return {"none": per_sample, "sum": per_sample.sum(), "mean": per_sample.sum() / per_sample.shape[0]}[reduction]


def _ra(r, f):
    return r - f.mean(), f - r.mean()


# name -> (medkern function taking (real, fake, **kw), plain-torch per-sample function, options)
LOSSES = {
    "minimax_d": (lambda r, f, **kw: L.minimax_d_loss(r, f, 0.0, **kw), lambda r, f: bce(r, 1.0) + bce(f, 0.0)),
    "minimax_d_smooth": (lambda r, f, **kw: L.minimax_d_loss(r, f, 0.1, **kw), lambda r, f: bce(r, 0.9) + bce(f, 0.0)),
    "nonsaturating_g": (lambda r, f, **kw: L.nonsaturating_g_loss(f, **kw), lambda r, f: bce(f, 1.0)),
    "lsgan_d": (lambda r, f, **kw: L.lsgan_d_loss(r, f, -1.0, 1.0, **kw),
                lambda r, f: 0.5 * _per_sample((r - 1.0) ** 2) + 0.5 * _per_sample((f + 1.0) ** 2)),
    "lsgan_g": (lambda r, f, **kw: L.lsgan_g_loss(f, 0.5, **kw), lambda r, f: 0.5 * _per_sample((f - 0.5) ** 2)),
    "hinge_d": (lambda r, f, **kw: L.hinge_d_loss(r, f, **kw),
                lambda r, f: _per_sample(F.relu(1 - r)) + _per_sample(F.relu(1 + f))),
    "hinge_g": (lambda r, f, **kw: L.hinge_g_loss(f, **kw), lambda r, f: _per_sample(-f)),
    "wasserstein_d": (lambda r, f, **kw: L.wasserstein_d_loss(r, f, **kw), lambda r, f: _per_sample(f) - _per_sample(r)),
    "wasserstein_g": (lambda r, f, **kw: L.wasserstein_g_loss(f, **kw), lambda r, f: -_per_sample(f)),
    "relativistic_d": (lambda r, f, **kw: L.relativistic_d_loss(r, f, **kw),
                       lambda r, f: bce(_ra(r, f)[0], 1.0) + bce(_ra(r, f)[1], 0.0)),
    "relativistic_g": (lambda r, f, **kw: L.relativistic_g_loss(r, f, **kw),
                       lambda r, f: bce(_ra(r, f)[0], 0.0) + bce(_ra(r, f)[1], 1.0)),
    "relativistic_hinge_d": (lambda r, f, **kw: L.relativistic_d_loss(r, f, "hinge", **kw),
                             lambda r, f: _per_sample(F.relu(1 - _ra(r, f)[0])) + _per_sample(F.relu(1 + _ra(r, f)[1]))),
    "relativistic_hinge_g": (lambda r, f, **kw: L.relativistic_g_loss(r, f, "hinge", **kw),
                             lambda r, f: _per_sample(F.relu(1 + _ra(r, f)[0])) + _per_sample(F.relu(1 - _ra(r, f)[1]))),
}


def penalty(grad, center, weight, reduction):
    """weight * ||g_n||^2 (center None) or weight * (||g_n|| - center)^2, reduced over samples."""
    norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
    per_sample = weight * (norm ** 2 if center is None else (norm - center) ** 2)
    return reduce(per_sample, None, reduction)

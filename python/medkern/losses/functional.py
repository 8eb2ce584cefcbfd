"""GAN losses and regularisers, functional forms. Every loss takes the discriminator's raw outputs
(logits for the logistic losses) of shape (N, ...), an optional per-sample ``weight`` of shape (N,) and
``reduction`` ("mean", "sum" or "none": the weighted per-sample losses, each the mean over the sample's
elements). "mean" is ``sum_n w_n loss_n / N``. Each loss is one fused kernel (``medkern.ops.gan_loss``).

The gradient penalties call the critic, take its input gradient with ``create_graph=True`` and reduce
the per-sample gradient norms in one fused kernel (``medkern.ops.gan_penalty``); the penalty's gradient
flows back through the critic's double backward, so a critic built from ``medkern.nn`` layers works.
Feature matching and the conditional helpers are plain torch compositions: each is one or two torch
kernels already, so fusing would save nothing worth a kernel.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .._gan_terms import BCE, HINGE, LINEAR, NONE, SQUARE
from ..ops.gan_loss import finite_number as _number, gan_loss, gan_penalty

__all__ = ["minimax_d_loss", "nonsaturating_g_loss", "lsgan_d_loss", "lsgan_g_loss", "hinge_d_loss", "hinge_g_loss",
           "wasserstein_d_loss", "wasserstein_g_loss", "relativistic_d_loss", "relativistic_g_loss",
           "gradient_penalty", "r1_penalty", "r2_penalty", "dragan_penalty", "feature_matching_loss",
           "projection_discriminator_term", "auxiliary_classifier_loss"]

_Weight = Optional[Tensor]


def minimax_d_loss(real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0, *,
                   weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """Goodfellow et al.'s discriminator loss, ``BCE(real, 1 - label_smoothing) + BCE(fake, 0)`` on logits.
    One-sided label smoothing (Salimans et al.) moves only the real target."""
    eps = _number(label_smoothing, "label_smoothing")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1), got {eps}")
    return gan_loss(real_logits, fake_logits, BCE, 1.0 - eps, BCE, 0.0, weight=weight, reduction=reduction)


def nonsaturating_g_loss(fake_logits: Tensor, *, weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """The non-saturating generator loss ``BCE(fake, 1) = softplus(-fake)`` on logits."""
    return gan_loss(None, fake_logits, NONE, 0.0, BCE, 1.0, weight=weight, reduction=reduction)


def lsgan_d_loss(real_out: Tensor, fake_out: Tensor, a: float = 0.0, b: float = 1.0, *, weight: _Weight = None,
                 reduction: str = "mean") -> Tensor:
    """Mao et al.: ``(real - b)^2 / 2 + (fake - a)^2 / 2``."""
    return gan_loss(real_out, fake_out, SQUARE, _number(b, "b"), SQUARE, _number(a, "a"), weight=weight,
                    reduction=reduction)


def lsgan_g_loss(fake_out: Tensor, c: float = 1.0, *, weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """Mao et al.: ``(fake - c)^2 / 2``."""
    return gan_loss(None, fake_out, NONE, 0.0, SQUARE, _number(c, "c"), weight=weight, reduction=reduction)


def hinge_d_loss(real_out: Tensor, fake_out: Tensor, *, weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """``relu(1 - real) + relu(1 + fake)`` (Lim & Ye; Miyato et al.)."""
    return gan_loss(real_out, fake_out, HINGE, -1.0, HINGE, 1.0, weight=weight, reduction=reduction)


def hinge_g_loss(fake_out: Tensor, *, weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """``-fake``."""
    return gan_loss(None, fake_out, NONE, 0.0, LINEAR, -1.0, weight=weight, reduction=reduction)


def wasserstein_d_loss(real_out: Tensor, fake_out: Tensor, *, weight: _Weight = None,
                       reduction: str = "mean") -> Tensor:
    """The critic loss of Arjovsky et al., ``fake - real``."""
    return gan_loss(real_out, fake_out, LINEAR, -1.0, LINEAR, 1.0, weight=weight, reduction=reduction)


def wasserstein_g_loss(fake_out: Tensor, *, weight: _Weight = None, reduction: str = "mean") -> Tensor:
    """``-fake``."""
    return gan_loss(None, fake_out, NONE, 0.0, LINEAR, -1.0, weight=weight, reduction=reduction)


# (real term, real param, fake term, fake param) of the relativistic average losses (Jolicoeur-Martineau),
# with real evaluated at real - mean(fake) and fake at fake - mean(real), the means over the whole batch.
_RELATIVISTIC = {
    ("standard", "d"): (BCE, 1.0, BCE, 0.0),    # -log sigmoid(r - E f) - log(1 - sigmoid(f - E r))
    ("standard", "g"): (BCE, 0.0, BCE, 1.0),    # the same with the roles swapped
    ("hinge", "d"): (HINGE, -1.0, HINGE, 1.0),  # relu(1 - (r - E f)) + relu(1 + (f - E r))
    ("hinge", "g"): (HINGE, 1.0, HINGE, -1.0),  # relu(1 + (r - E f)) + relu(1 - (f - E r))
}


def _relativistic(real_out, fake_out, kind, side, weight, reduction):
    if (kind, side) not in _RELATIVISTIC:
        raise ValueError(f"kind: expected 'standard' or 'hinge', got {kind!r}")
    if real_out is None or fake_out is None:
        raise ValueError("real_out, fake_out: a relativistic loss needs both")
    return gan_loss(real_out, fake_out, *_RELATIVISTIC[kind, side], relativistic=True, weight=weight,
                    reduction=reduction)


def relativistic_d_loss(real_out: Tensor, fake_out: Tensor, kind: str = "standard", *, weight: _Weight = None,
                        reduction: str = "mean") -> Tensor:
    """Relativistic average discriminator loss (RaGAN, ``kind="standard"``, or RaHinge, ``"hinge"``)."""
    return _relativistic(real_out, fake_out, kind, "d", weight, reduction)


def relativistic_g_loss(real_out: Tensor, fake_out: Tensor, kind: str = "standard", *, weight: _Weight = None,
                        reduction: str = "mean") -> Tensor:
    """Relativistic average generator loss: the discriminator's with real and fake exchanged."""
    return _relativistic(real_out, fake_out, kind, "g", weight, reduction)


# --- gradient penalties ------------------------------------------------------------------------------------

def _critic_input_grad(critic: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    if not callable(critic):
        raise TypeError(f"critic: expected a callable (an nn.Module), got {type(critic).__name__}")
    if not x.requires_grad:
        x = x.requires_grad_(True)
    out = critic(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"critic: must return a tensor, got {type(out).__name__}")
    # Samples are independent (no batch statistics in a critic that is penalised), so the gradient of the
    # sum is every sample's own input gradient.
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


def _check_images(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point() or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name}: expected a non-empty floating (N, ...) batch, got {x.dtype} {tuple(x.shape)}")
    return x


def _per_sample_uniform(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    """One U[0, 1) coefficient per sample, shaped to broadcast over (N, ...)."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return torch.rand(shape, dtype=x.dtype, device=x.device, generator=generator)


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weight: float = 10.0, *,
                     reduction: str = "mean", generator: Optional[torch.Generator] = None) -> Tensor:
    """WGAN-GP (Gulrajani et al.): ``weight * (||grad D(x_hat)|| - 1)^2`` with ``x_hat = a real + (1 - a)
    fake``, one ``a ~ U[0, 1)`` and one norm per sample. ``fake`` is detached (the penalty trains the
    critic)."""
    real, fake = _check_images(real, "real"), _check_images(fake, "fake")
    if real.shape != fake.shape:
        raise ValueError(f"fake: shape {tuple(fake.shape)} differs from real's {tuple(real.shape)}")
    alpha = _per_sample_uniform(real, generator)
    x_hat = torch.lerp(fake.detach(), real.detach(), alpha)
    return gan_penalty(_critic_input_grad(critic, x_hat), center=1.0, scale=_number(weight, "weight"),
                       reduction=reduction)


def _zero_centred(critic, x, name, weight, reduction):
    x = _check_images(x, name).detach()
    return gan_penalty(_critic_input_grad(critic, x), center=-1.0, scale=_number(weight, "weight") / 2,
                       reduction=reduction)


def r1_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, weight: float = 10.0, *,
               reduction: str = "mean") -> Tensor:
    """R1 (Mescheder et al.): ``weight / 2 * ||grad D(real)||^2``, weight being the paper's gamma."""
    return _zero_centred(critic, real, "real", weight, reduction)


def r2_penalty(critic: Callable[[Tensor], Tensor], fake: Tensor, weight: float = 10.0, *,
               reduction: str = "mean") -> Tensor:
    """R2 (Mescheder et al.): ``weight / 2 * ||grad D(fake)||^2``."""
    return _zero_centred(critic, fake, "fake", weight, reduction)


def dragan_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, weight: float = 10.0, k: float = 1.0, *,
                   perturbation: float = 0.5, reduction: str = "mean",
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """DRAGAN (Kodali et al.): ``weight * (||grad D(x_hat)|| - k)^2`` around the data, ``x_hat = real + a
    delta`` with ``delta = perturbation * std(real) * U[0, 1)`` per element and one ``a ~ U[0, 1)`` per
    sample, as in the authors' code."""
    real = _check_images(real, "real").detach()
    k = _number(k, "k")
    if k < 0:
        raise ValueError(f"k: must be non-negative, got {k}")
    noise = torch.rand(real.shape, dtype=real.dtype, device=real.device, generator=generator)
    x_hat = real + _per_sample_uniform(real, generator) * (_number(perturbation, "perturbation") * real.std() * noise)
    return gan_penalty(_critic_input_grad(critic, x_hat), center=k, scale=_number(weight, "weight"),
                       reduction=reduction)


# --- feature matching and conditional helpers ----------------------------------------------------------------

def feature_matching_loss(real_features: Tensor | Sequence[Tensor], fake_features: Tensor | Sequence[Tensor]) -> Tensor:
    """Salimans et al.: ``||E f(real) - E f(fake)||^2`` with the expectations over the batch and the squared
    norm averaged over feature elements, summed over layers when given lists of intermediate features.
    Real features are detached (the loss trains the generator)."""
    if isinstance(real_features, Tensor) != isinstance(fake_features, Tensor):
        raise TypeError("real_features, fake_features: give two tensors or two sequences of tensors")
    reals = [real_features] if isinstance(real_features, Tensor) else list(real_features)
    fakes = [fake_features] if isinstance(fake_features, Tensor) else list(fake_features)
    if len(reals) != len(fakes) or not reals:
        raise ValueError(f"fake_features: expected {len(reals)} layers to match real_features, got {len(fakes)}")
    total = 0
    for i, (r, f) in enumerate(zip(reals, fakes)):
        if r.shape[1:] != f.shape[1:]:
            raise ValueError(f"fake_features[{i}]: feature shape {tuple(f.shape[1:])} differs from "
                             f"real_features[{i}]'s {tuple(r.shape[1:])}")
        total = total + F.mse_loss(f.mean(0), r.detach().mean(0))
    return total


def projection_discriminator_term(features: Tensor, labels: Tensor, embedding: Tensor) -> Tensor:
    """The class term of a projection discriminator (Miyato & Koyama), ``<embedding[y], phi(x)>`` per
    sample, to add to the unconditional output: features (N, F), labels (N,) int64, embedding (classes, F)."""
    if features.dim() != 2 or embedding.dim() != 2 or features.shape[1] != embedding.shape[1]:
        raise ValueError(f"features, embedding: expected (N, F) and (classes, F), got {tuple(features.shape)} and "
                         f"{tuple(embedding.shape)}")
    if labels.shape != features.shape[:1] or labels.dtype != torch.int64:
        raise ValueError(f"labels: expected int64 of shape ({features.shape[0]},), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    return (F.embedding(labels, embedding) * features).sum(1)


def auxiliary_classifier_loss(class_logits: Tensor, labels: Tensor, *, weight: _Weight = None,
                              reduction: str = "mean") -> Tensor:
    """AC-GAN's auxiliary classifier loss (Odena et al.): cross-entropy of the discriminator's class logits
    (N, classes) against the labels, with the per-sample weights and reductions of the other losses."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    loss = F.cross_entropy(class_logits, labels, reduction="none")
    if weight is not None:
        if weight.shape != loss.shape:
            raise ValueError(f"weight: expected shape {tuple(loss.shape)}, got {tuple(weight.shape)}")
        loss = loss * weight
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()

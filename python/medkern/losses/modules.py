"""``nn.Module`` forms of :mod:`medkern.losses.functional`: each holds its options and calls its function."""
from __future__ import annotations

import torch

from . import functional as F


class _LossModule(torch.nn.Module):
    """Stores keyword options at construction and passes them to ``_fn`` on every call."""

    _fn = None

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, *args, **kwargs):
        return type(self)._fn(*args, **self.options, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class MinimaxDLoss(_LossModule):
    """:func:`~medkern.losses.functional.minimax_d_loss`; call with (real_logits, fake_logits)."""
    _fn = staticmethod(F.minimax_d_loss)

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(label_smoothing=label_smoothing, reduction=reduction)


class NonSaturatingGLoss(_LossModule):
    """:func:`~medkern.losses.functional.nonsaturating_g_loss`; call with (fake_logits)."""
    _fn = staticmethod(F.nonsaturating_g_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class LSGANDLoss(_LossModule):
    """:func:`~medkern.losses.functional.lsgan_d_loss`; call with (real_out, fake_out)."""
    _fn = staticmethod(F.lsgan_d_loss)

    def __init__(self, a: float = 0.0, b: float = 1.0, reduction: str = "mean"):
        super().__init__(a=a, b=b, reduction=reduction)


class LSGANGLoss(_LossModule):
    """:func:`~medkern.losses.functional.lsgan_g_loss`; call with (fake_out)."""
    _fn = staticmethod(F.lsgan_g_loss)

    def __init__(self, c: float = 1.0, reduction: str = "mean"):
        super().__init__(c=c, reduction=reduction)


class HingeDLoss(_LossModule):
    """:func:`~medkern.losses.functional.hinge_d_loss`; call with (real_out, fake_out)."""
    _fn = staticmethod(F.hinge_d_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class HingeGLoss(_LossModule):
    """:func:`~medkern.losses.functional.hinge_g_loss`; call with (fake_out)."""
    _fn = staticmethod(F.hinge_g_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class WassersteinDLoss(_LossModule):
    """:func:`~medkern.losses.functional.wasserstein_d_loss`; call with (real_out, fake_out)."""
    _fn = staticmethod(F.wasserstein_d_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class WassersteinGLoss(_LossModule):
    """:func:`~medkern.losses.functional.wasserstein_g_loss`; call with (fake_out)."""
    _fn = staticmethod(F.wasserstein_g_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class RelativisticDLoss(_LossModule):
    """:func:`~medkern.losses.functional.relativistic_d_loss`; call with (real_out, fake_out)."""
    _fn = staticmethod(F.relativistic_d_loss)

    def __init__(self, kind: str = "standard", reduction: str = "mean"):
        super().__init__(kind=kind, reduction=reduction)


class RelativisticGLoss(_LossModule):
    """:func:`~medkern.losses.functional.relativistic_g_loss`; call with (real_out, fake_out)."""
    _fn = staticmethod(F.relativistic_g_loss)

    def __init__(self, kind: str = "standard", reduction: str = "mean"):
        super().__init__(kind=kind, reduction=reduction)


class GradientPenalty(_LossModule):
    """:func:`~medkern.losses.functional.gradient_penalty`; call with (critic, real, fake)."""
    _fn = staticmethod(F.gradient_penalty)

    def __init__(self, weight: float = 10.0, reduction: str = "mean"):
        super().__init__(weight=weight, reduction=reduction)


class R1Penalty(_LossModule):
    """:func:`~medkern.losses.functional.r1_penalty`; call with (critic, real)."""
    _fn = staticmethod(F.r1_penalty)

    def __init__(self, weight: float = 10.0, reduction: str = "mean"):
        super().__init__(weight=weight, reduction=reduction)


class R2Penalty(_LossModule):
    """:func:`~medkern.losses.functional.r2_penalty`; call with (critic, fake)."""
    _fn = staticmethod(F.r2_penalty)

    def __init__(self, weight: float = 10.0, reduction: str = "mean"):
        super().__init__(weight=weight, reduction=reduction)


class DRAGANPenalty(_LossModule):
    """:func:`~medkern.losses.functional.dragan_penalty`; call with (critic, real)."""
    _fn = staticmethod(F.dragan_penalty)

    def __init__(self, weight: float = 10.0, k: float = 1.0, perturbation: float = 0.5, reduction: str = "mean"):
        super().__init__(weight=weight, k=k, perturbation=perturbation, reduction=reduction)


class FeatureMatchingLoss(_LossModule):
    """:func:`~medkern.losses.functional.feature_matching_loss`; call with (real_features, fake_features)."""
    _fn = staticmethod(F.feature_matching_loss)


class AuxiliaryClassifierLoss(_LossModule):
    """:func:`~medkern.losses.functional.auxiliary_classifier_loss`; call with (class_logits, labels)."""
    _fn = staticmethod(F.auxiliary_classifier_loss)

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction=reduction)


class ProjectionDiscriminatorHead(torch.nn.Module):
    """The output head of a projection discriminator (Miyato & Koyama): ``psi(phi) + <V y, phi>`` from
    pooled features phi (N, F) and labels y (N,)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.linear = torch.nn.Linear(num_features, 1)
        self.embedding = torch.nn.Embedding(num_classes, num_features)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.linear(features).squeeze(1) + F.projection_discriminator_term(features, labels,
                                                                                  self.embedding.weight)

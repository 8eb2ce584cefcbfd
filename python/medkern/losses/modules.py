"""``nn.Module`` forms of :mod:`medkern.losses.functional`: each holds its options and calls its function."""
from __future__ import annotations

import inspect

import torch

from . import functional as F


class _LossModule(torch.nn.Module):
    """Stores keyword options at construction and passes them to ``_fn`` on every call.

    A subclass names its function and the options it holds, ``class X(_LossModule, fn=F.x,
    options=("reduction",))``, and gets a constructor taking those options, positionally or by name, with
    the function's defaults and annotations: each default is written once, in the function."""

    _fn = None

    def __init_subclass__(cls, *, fn, options=(), **kwargs):
        super().__init_subclass__(**kwargs)
        cls._fn = staticmethod(fn)
        params = inspect.signature(fn).parameters
        signature = inspect.Signature([params[name].replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for name in options])

        def __init__(self, *args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            _LossModule.__init__(self, **bound.arguments)

        # On __init__, not the class: an instance's own signature stays that of its call.
        __init__.__signature__ = signature.replace(parameters=[
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *signature.parameters.values()])
        cls.__init__ = __init__

    def __init__(self, **options):
        super().__init__()
        self.options = options

    def forward(self, *args, **kwargs):
        return type(self)._fn(*args, **self.options, **kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


class MinimaxDLoss(_LossModule, fn=F.minimax_d_loss, options=("label_smoothing", "reduction")):
    """:func:`~medkern.losses.functional.minimax_d_loss`; call with (real_logits, fake_logits)."""


class NonSaturatingGLoss(_LossModule, fn=F.nonsaturating_g_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.nonsaturating_g_loss`; call with (fake_logits)."""


class LSGANDLoss(_LossModule, fn=F.lsgan_d_loss, options=("a", "b", "reduction")):
    """:func:`~medkern.losses.functional.lsgan_d_loss`; call with (real_out, fake_out)."""


class LSGANGLoss(_LossModule, fn=F.lsgan_g_loss, options=("c", "reduction")):
    """:func:`~medkern.losses.functional.lsgan_g_loss`; call with (fake_out)."""


class HingeDLoss(_LossModule, fn=F.hinge_d_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.hinge_d_loss`; call with (real_out, fake_out)."""


class HingeGLoss(_LossModule, fn=F.hinge_g_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.hinge_g_loss`; call with (fake_out)."""


class WassersteinDLoss(_LossModule, fn=F.wasserstein_d_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.wasserstein_d_loss`; call with (real_out, fake_out)."""


class WassersteinGLoss(_LossModule, fn=F.wasserstein_g_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.wasserstein_g_loss`; call with (fake_out)."""


class RelativisticDLoss(_LossModule, fn=F.relativistic_d_loss, options=("kind", "reduction")):
    """:func:`~medkern.losses.functional.relativistic_d_loss`; call with (real_out, fake_out)."""


class RelativisticGLoss(_LossModule, fn=F.relativistic_g_loss, options=("kind", "reduction")):
    """:func:`~medkern.losses.functional.relativistic_g_loss`; call with (real_out, fake_out)."""


class GradientPenalty(_LossModule, fn=F.gradient_penalty, options=("weight", "reduction")):
    """:func:`~medkern.losses.functional.gradient_penalty`; call with (critic, real, fake)."""


class R1Penalty(_LossModule, fn=F.r1_penalty, options=("weight", "reduction")):
    """:func:`~medkern.losses.functional.r1_penalty`; call with (critic, real)."""


class R2Penalty(_LossModule, fn=F.r2_penalty, options=("weight", "reduction")):
    """:func:`~medkern.losses.functional.r2_penalty`; call with (critic, fake)."""


class DRAGANPenalty(_LossModule, fn=F.dragan_penalty, options=("weight", "k", "perturbation", "reduction")):
    """:func:`~medkern.losses.functional.dragan_penalty`; call with (critic, real)."""


class FeatureMatchingLoss(_LossModule, fn=F.feature_matching_loss):
    """:func:`~medkern.losses.functional.feature_matching_loss`; call with (real_features, fake_features)."""


class AuxiliaryClassifierLoss(_LossModule, fn=F.auxiliary_classifier_loss, options=("reduction",)):
    """:func:`~medkern.losses.functional.auxiliary_classifier_loss`; call with (class_logits, labels)."""


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

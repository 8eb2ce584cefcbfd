"""GAN losses and regularisers on fused kernels: functional forms (``medkern.losses.minimax_d_loss``, ...)
and ``nn.Module`` classes. See :mod:`medkern.losses.functional`."""
from .functional import (auxiliary_classifier_loss, dragan_penalty, feature_matching_loss, gradient_penalty,
                         hinge_d_loss, hinge_g_loss, lsgan_d_loss, lsgan_g_loss, minimax_d_loss,
                         nonsaturating_g_loss, projection_discriminator_term, r1_penalty, r2_penalty,
                         relativistic_d_loss, relativistic_g_loss, wasserstein_d_loss, wasserstein_g_loss)
from .modules import (AuxiliaryClassifierLoss, DRAGANPenalty, FeatureMatchingLoss, GradientPenalty, HingeDLoss,
                      HingeGLoss, LSGANDLoss, LSGANGLoss, MinimaxDLoss, NonSaturatingGLoss, ProjectionDiscriminatorHead,
                      R1Penalty, R2Penalty, RelativisticDLoss, RelativisticGLoss, WassersteinDLoss, WassersteinGLoss)

__all__ = ["minimax_d_loss", "nonsaturating_g_loss", "lsgan_d_loss", "lsgan_g_loss", "hinge_d_loss", "hinge_g_loss",
           "wasserstein_d_loss", "wasserstein_g_loss", "relativistic_d_loss", "relativistic_g_loss",
           "gradient_penalty", "r1_penalty", "r2_penalty", "dragan_penalty", "feature_matching_loss",
           "projection_discriminator_term", "auxiliary_classifier_loss",
           "MinimaxDLoss", "NonSaturatingGLoss", "LSGANDLoss", "LSGANGLoss", "HingeDLoss", "HingeGLoss",
           "WassersteinDLoss", "WassersteinGLoss", "RelativisticDLoss", "RelativisticGLoss", "GradientPenalty",
           "R1Penalty", "R2Penalty", "DRAGANPenalty", "FeatureMatchingLoss", "AuxiliaryClassifierLoss",
           "ProjectionDiscriminatorHead"]

"""What a GAN loss kernel is told to compute, shared by the ops layer and every backend (the codes are
csrc/common/gan_loss_params.h's ``GanTerm``).

Each side (real, fake) of a loss applies one per-element term to x (x minus the other side's batch mean
when ``relativistic``), with parameter p:

    BCE     max(x, 0) - p x + log1p(exp(-|x|))   binary cross-entropy with logits against target p
    SQUARE  (x - p)^2 / 2
    HINGE   max(0, 1 + p x)
    LINEAR  p x

A sample's loss is the mean of its terms over its elements, summed over the sides; ``per_sample[n] =
scale * w[n] * loss[n]`` and ``total = sum(per_sample)``, with scale 1/N for reduction "mean" and 1
otherwise.
"""
from __future__ import annotations

from typing import NamedTuple

NONE, BCE, SQUARE, HINGE, LINEAR = 0, 1, 2, 3, 4


class GanLossSpec(NamedTuple):
    real_term: int
    real_param: float
    fake_term: int
    fake_param: float
    relativistic: bool
    scale: float

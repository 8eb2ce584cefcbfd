"""GAN losses and gradient penalties as fused ops.

``gan_loss`` evaluates one loss over the discriminator's (N, ...) outputs on the real and/or the fake side
(``medkern._gan_terms`` says what each side computes) and, in the same pass, the gradient with respect to
both inputs, which the backward only scales by the incoming gradient. ``gan_penalty`` reduces the
per-sample norms of a critic's input gradient into a penalty and keeps the per-sample coefficients of its
gradient. ``medkern.losses`` builds the named losses on these two ops.

Both ops are routed as every medkern op (``ops._dispatch.route``), over one implementation: the kernel
for a plain eager call without gradients, a ``torch.autograd.Function`` for a plain eager call with
gradients (no dispatcher round trip on the hot path of a training step) and a ``torch.library`` custom op
with a fake kernel and registered autograd for everything else (``torch.compile``, tracing, functorch
transforms, dispatch modes). Second derivatives are exact on both: a backward that must itself be
differentiable (``create_graph=True``) differentiates the plain-torch formulas of the ``reference``
backend instead of scaling the saved gradient.

Reductions over samples: "mean" divides the (weighted) sum of the per-sample losses by N, not by the sum
of the weights, so a weight scales its sample's share of a fixed batch mean; "none" returns the weighted
per-sample losses.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .. import backends
from .._gan_terms import NONE, GanLossSpec
from ..backends.reference import gan_loss as _reference
from . import _alloc, _validate as v
from ._dispatch import route

__all__ = ["gan_loss", "gan_penalty", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


def _kernels(t: Tensor):
    return backends.for_tensor("gan_loss", t)


def _forward(real, fake, weight, spec, grad_real, grad_fake):
    ref = real if real is not None else fake
    N = ref.shape[0]
    per_sample, total = _alloc.empty((N,), ref), _alloc.empty((), ref)
    d_real = _alloc.empty_like(real) if grad_real else None
    d_fake = _alloc.empty_like(fake) if grad_fake else None
    cross = spec.relativistic and (grad_real or grad_fake)
    dsum_real = _alloc.empty((N,), ref) if cross else None
    dsum_fake = _alloc.empty((N,), ref) if cross else None
    _kernels(ref).gan_loss_forward(real, fake, weight, per_sample, total, d_real, d_fake, dsum_real, dsum_fake, spec)
    return per_sample, total, d_real, d_fake, dsum_real, dsum_fake


def _penalty_forward(grad, center, scale):
    N = grad.shape[0]
    per_sample, total, coef = _alloc.empty((N,), grad), _alloc.empty((), grad), _alloc.empty((N,), grad)
    _kernels(grad).gan_penalty_forward(grad, per_sample, total, coef, center, scale)
    return per_sample, total, coef


def _per_sample_view(g: Tensor, like: Tensor) -> Tensor:
    """g as a scalar, or (N,) viewed to broadcast over (N, ...)."""
    return g if g.dim() == 0 else g.view(-1, *([1] * (like.dim() - 1)))


# --- backward, shared by both entry points ---------------------------------------------------------------

def _unit(g: Tensor) -> bool:
    """Whether the incoming gradient is the scalar 1 (``loss.backward()``), checked only where that costs
    no device synchronisation."""
    return g.dim() == 0 and g.is_cpu and g.item() == 1.0


def _loss_backward(ctx, g, saved, buffers, may_hand_out: bool):
    """Input gradients from the saved ``buffers`` (d_real, d_fake, dsum_real, dsum_fake), or None once
    they were handed out. ``saved()`` returns (real, fake, weight), asked for only where they are needed
    (unpacking saved tensors is a good part of a small loss's backward). ``may_hand_out``: the buffers are
    this call's own (not the custom op's saved outputs), so with an incoming gradient of exactly 1 they can
    be returned as they are instead of scaled into fresh copies; a later backward through the same graph
    (retain_graph) recomputes them."""
    wanted = ctx.needs_input_grad[:3]
    if buffers is None:
        buffers = _forward(*saved(), ctx.spec, wanted[0], wanted[1])[2:]
    d_real, d_fake, dsum_real, dsum_fake = buffers
    missing = (wanted[0] and d_real is None) or (wanted[1] and d_fake is None)
    if torch.is_grad_enabled() or wanted[2] or missing:
        # Second order, a gradient for the weights, or the custom op run without saved gradients (called
        # directly with with_grad=False): differentiate the formulas themselves.
        real, fake, weight = saved()
        inputs = [t for t, w in zip((real, fake, weight), wanted) if w]
        with torch.enable_grad():
            ps = _reference.per_sample_losses(real, fake, weight, ctx.spec)
            grads = iter(torch.autograd.grad(ps if ctx.none else ps.sum(), inputs, g,
                                             create_graph=torch.is_grad_enabled()))
        return tuple(next(grads) if w else None for w in wanted)
    if may_hand_out and not ctx.spec.relativistic and _unit(g):
        ctx.buffers = None
        return d_real if wanted[0] else None, d_fake if wanted[1] else None, None
    grad_real = grad_fake = None
    if wanted[0]:
        grad_real = d_real * _per_sample_view(g, d_real)
    if wanted[1]:
        grad_fake = d_fake * _per_sample_view(g, d_fake)
    if ctx.spec.relativistic:  # each side also moves the other side's batch mean
        count = saved()[0].numel()
        if wanted[0]:
            grad_real = grad_real - (g * dsum_fake).sum() / count
        if wanted[1]:
            grad_fake = grad_fake - (g * dsum_real).sum() / count
    return grad_real, grad_fake, None


def _penalty_backward(ctx, g):
    grad, coef = ctx.saved_tensors
    if torch.is_grad_enabled():
        with torch.enable_grad():
            ps = _reference.penalty_per_sample(grad, ctx.center, ctx.scale)
            (out,) = torch.autograd.grad(ps if ctx.none else ps.sum(), grad, g, create_graph=True)
        return out
    return grad * _per_sample_view(coef * g, grad)


# --- the three routes of each op, one signature: (real, fake, weight, spec, none) and (grad, center,
# scale, none) -----------------------------------------------------------------------------------------

def _loss_kernel(real, fake, weight, spec, none):
    per_sample, total, *_ = _forward(real, fake, weight, spec, False, False)
    return per_sample if none else total


def _penalty_kernel(grad, center, scale, none):
    per_sample, total, _ = _penalty_forward(grad, center, scale)
    return per_sample if none else total


class _GanLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, real, fake, weight, spec, none):
        need = ctx.needs_input_grad
        per_sample, total, *buffers = _forward(real, fake, weight, spec, need[0], need[1])
        ctx.spec, ctx.none = spec, none
        ctx.save_for_backward(real, fake, weight)
        # Intermediates, not inputs or outputs: kept on ctx, outside save_for_backward's version checks,
        # so that a gradient handed out (and later accumulated into in place) does not poison the graph.
        ctx.buffers = buffers
        return per_sample if none else total

    @staticmethod
    def backward(ctx, g):
        return (*_loss_backward(ctx, g, lambda: ctx.saved_tensors, ctx.buffers, True), None, None)


class _GanPenalty(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad, center, scale, none):
        per_sample, total, coef = _penalty_forward(grad, center, scale)
        ctx.center, ctx.scale, ctx.none = center, scale, none
        ctx.save_for_backward(grad, coef)
        return per_sample if none else total

    @staticmethod
    def backward(ctx, g):
        return _penalty_backward(ctx, g), None, None, None


# The twins' apply, looked up once (each `Function.apply` look-up makes a new bound method: 75 ns).
_loss_twin, _penalty_twin = _GanLoss.apply, _GanPenalty.apply


# --- custom ops ------------------------------------------------------------------------------------------

def _or_empty(t, like):
    return like.new_empty(0) if t is None else t


def _or_none(t):
    return None if t is None or t.numel() == 0 else t


@torch.library.custom_op("medkern::gan_loss", mutates_args=())
def gan_loss_op(real: Optional[Tensor], fake: Optional[Tensor], weight: Optional[Tensor], real_term: int,
                real_param: float, fake_term: int, fake_param: float, relativistic: bool, scale: float,
                none: bool, with_grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(loss, d_real, d_fake, dsum_real, dsum_fake); absent pieces are empty tensors."""
    spec = GanLossSpec(real_term, real_param, fake_term, fake_param, relativistic, scale)
    per_sample, total, *saved = _forward(real, fake, weight, spec, with_grad and real is not None,
                                         with_grad and fake is not None)
    return (per_sample if none else total, *(_or_empty(t, per_sample) for t in saved))


@gan_loss_op.register_fake
def _(real, fake, weight, real_term, real_param, fake_term, fake_param, relativistic, scale, none, with_grad):
    ref = real if real is not None else fake
    N = ref.shape[0]
    d_real = real.new_empty(real.shape) if with_grad and real is not None else ref.new_empty(0)
    d_fake = fake.new_empty(fake.shape) if with_grad and fake is not None else ref.new_empty(0)
    dsum = (N,) if with_grad and relativistic else (0,)
    return ref.new_empty((N,) if none else ()), d_real, d_fake, ref.new_empty(dsum), ref.new_empty(dsum)


def _loss_op_setup(ctx, inputs, output):
    real, fake, weight, rt, rp, ft, fp, relativistic, scale, none, _ = inputs
    ctx.mark_non_differentiable(*output[1:])
    ctx.spec, ctx.none = GanLossSpec(rt, rp, ft, fp, relativistic, scale), none
    ctx.save_for_backward(real, fake, weight, *output[1:])


def _loss_op_backward(ctx, g, *_):
    real, fake, weight, *buffers = ctx.saved_tensors
    grads = _loss_backward(ctx, g, lambda: (real, fake, weight), [_or_none(t) for t in buffers], False)
    return (*grads, None, None, None, None, None, None, None, None)


torch.library.register_autograd("medkern::gan_loss", _loss_op_backward, setup_context=_loss_op_setup)


def _loss_custom(real, fake, weight, spec, none):
    with_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (real, fake, weight))
    return gan_loss_op(real, fake, weight, *spec, none, with_grad)[0]


@torch.library.custom_op("medkern::gan_penalty", mutates_args=())
def gan_penalty_op(grad: Tensor, center: float, scale: float, none: bool) -> tuple[Tensor, Tensor]:
    """(penalty, coef): d penalty_n / d grad_n = coef[n] * grad_n."""
    per_sample, total, coef = _penalty_forward(grad, center, scale)
    return per_sample if none else total, coef


@gan_penalty_op.register_fake
def _(grad, center, scale, none):
    N = grad.shape[0]
    return grad.new_empty((N,) if none else ()), grad.new_empty((N,))


def _penalty_op_setup(ctx, inputs, output):
    grad, center, scale, none = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.center, ctx.scale, ctx.none = center, scale, none
    ctx.save_for_backward(grad, output[1])


def _penalty_op_backward(ctx, g, _):
    return _penalty_backward(ctx, g), None, None, None


torch.library.register_autograd("medkern::gan_penalty", _penalty_op_backward, setup_context=_penalty_op_setup)


def _penalty_custom(grad, center, scale, none):
    return gan_penalty_op(grad, center, scale, none)[0]


# --- validation and public entry points --------------------------------------------------------------------

def _samples(t, name: str) -> Tensor:
    if t.dim() < 1 or t.shape[0] < 1 or t.numel() < 1:
        raise ValueError(f"{name}: expected a non-empty (N, ...) tensor of discriminator outputs, got shape "
                         f"{tuple(t.shape)}")
    return t.contiguous()


def _reduction(reduction) -> bool:
    """True for "none"."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return reduction == "none"


def finite_number(x, name: str) -> float:
    """x as a float; TypeError unless a real number, ValueError unless finite (shared with medkern.losses)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {type(x).__name__}")
    if not math.isfinite(x):
        raise ValueError(f"{name}: must be finite, got {x}")
    return float(x)


def gan_loss(real: Optional[Tensor], fake: Optional[Tensor], real_term: int, real_param: float, fake_term: int,
             fake_param: float, *, relativistic: bool = False, weight: Optional[Tensor] = None,
             reduction: str = "mean") -> Tensor:
    """One fused GAN loss (see ``medkern._gan_terms``); a side whose term is NONE must be None."""
    names = ("real", "fake")
    present = [(t, n) for t, n in zip((real, fake), names) if t is not None]
    for t, n in present:
        v.tensor(t, n, range(1, 9))
    ref, ref_name = present[0]
    if real is not None and fake is not None:
        v.same_device_dtype(real, "real", fake=fake)
        if real.shape != fake.shape:
            raise ValueError(f"fake: shape {tuple(fake.shape)} differs from real's {tuple(real.shape)}")
    none = _reduction(reduction)
    real = None if real is None else _samples(real, "real")
    fake = None if fake is None else _samples(fake, "fake")
    N = ref.shape[0]
    if weight is not None:
        v.tensor(weight, "weight", (1,))
        v.same_device_dtype(ref, ref_name, weight=weight)
        if weight.shape[0] != N:
            raise ValueError(f"weight: expected one weight per sample, shape ({N},), got {tuple(weight.shape)}")
        if not bool(torch.isfinite(weight).all()):
            raise ValueError("weight: must be finite (found NaN or infinity)")
        weight = weight.contiguous()
    spec = GanLossSpec(real_term if real is not None else NONE, real_param,
                       fake_term if fake is not None else NONE, fake_param, relativistic, 1.0 if none or
                       reduction == "sum" else 1.0 / N)
    return route(_loss_kernel, _loss_twin, _loss_custom, real, fake, weight)(real, fake, weight, spec, none)


def gan_penalty(grad: Tensor, *, center: float, scale: float, reduction: str = "mean") -> Tensor:
    """``scale * ||g_n||^2`` (center < 0) or ``scale * (||g_n|| - center)^2`` per sample n of a critic's
    input gradient ``grad``, reduced over the samples."""
    v.tensor(grad, "grad", range(1, 9))
    grad = _samples(grad, "grad")
    none = _reduction(reduction)
    scale = finite_number(scale, "scale") * (1.0 if none or reduction == "sum" else 1.0 / grad.shape[0])
    center = finite_number(center, "center")
    return route(_penalty_kernel, _penalty_twin, _penalty_custom, grad)(grad, center, scale, none)

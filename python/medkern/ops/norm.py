"""Batch normalisation with its activation fused: ``batch_norm`` takes ``F.batch_norm``'s arguments plus the
ReLU or LeakyReLU that follows it, so that normalising and activating are one pass over memory (torch makes
two, and two more for their backwards).

With batch statistics (training, or no running statistics) a call makes one pass for the per-channel mean and
variance and one for ``act((x - mean) * invstd * weight + bias)``; its backward makes one pass for the two sums
and one for the input gradient. With running statistics it is the one affine-and-activation pass. Kernels
are the backend's optional ``norm`` entries (medkern's CPU module); elsewhere torch composes the same maths
(``_reference_*`` below, which are also what a backward that builds a graph runs, so that gradients of
gradients see the statistics' dependence on the input).

The custom ops ``medkern::batch_norm`` and ``medkern::batch_norm_backward`` serve tracers and compilers; a
plain eager call runs the kernels or their autograd twin directly (``_dispatch.route``)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import backends
from .._geometry import ACTIVATIONS
from . import _alloc, _validate as v
from ._dispatch import route
from .conv import _activation_grad

__all__ = ["batch_norm"]


def _channel_view(t: Tensor, rank: int) -> Tensor:
    """A (C,) vector shaped to broadcast over an (N, C, ...) tensor of that rank."""
    return t.view((1, -1) + (1,) * (rank - 2))


def _reduced_dims(x: Tensor) -> list[int]:
    return [0, *range(2, x.dim())]


def _activate(y: Tensor, activation: int, negative_slope: float) -> Tensor:
    if activation == ACTIVATIONS["relu"]:
        return torch.relu(y)
    if activation == ACTIVATIONS["leaky_relu"]:
        return F.leaky_relu(y, negative_slope)
    return y


# --- the maths in torch: the backend fallback and the differentiable backward -----------------------------

def _reference_statistics(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, invstd, biased var) per channel."""
    var, mean = torch.var_mean(x, _reduced_dims(x), correction=0)
    return mean, (var + eps).rsqrt(), var


def _reference_backward(grad_output, input, output, weight, eps, activation, negative_slope):
    """(grad_input, grad_weight, grad_bias), differentiable in grad_output, input and weight: the statistics
    are recomputed from the input rather than taken from the forward."""
    g = _activation_grad(grad_output, output, activation, negative_slope) if activation else grad_output
    mean, invstd, _ = _reference_statistics(input, eps)
    dims, rank = _reduced_dims(input), input.dim()
    xhat = (input - _channel_view(mean, rank)) * _channel_view(invstd, rank)
    grad_bias = g.sum(dims)
    grad_weight = (g * xhat).sum(dims)
    count = input.numel() // input.shape[1]
    k = invstd if weight is None else invstd * weight
    grad_input = _channel_view(k, rank) * (g - _channel_view(grad_bias / count, rank)
                                           - xhat * _channel_view(grad_weight / count, rank))
    return grad_input, grad_weight, grad_bias


# --- implementations (shared by the fast path and the custom ops) ----------------------------------------

def _affine(mean: Tensor, invstd: Tensor, weight: Optional[Tensor], bias: Optional[Tensor]):
    """(scale, shift) with (x - mean) * invstd * weight + bias = x * scale + shift."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return scale, shift


def _apply(x: Tensor, scale: Tensor, shift: Tensor, activation: int, negative_slope: float) -> Tensor:
    kernel = backends.optional("norm", x, "batch_norm_apply")
    if kernel is None:
        rank = x.dim()
        return _activate(x * _channel_view(scale, rank) + _channel_view(shift, rank), activation, negative_slope)
    out = _alloc.empty(x.shape, x)
    kernel(x, scale.contiguous(), shift.contiguous(), out, activation, negative_slope)
    return out


def _train(input, weight, bias, eps, activation, negative_slope):
    """(output, mean, invstd, biased var) with the batch's statistics."""
    x = input.contiguous()
    statistics = backends.optional("norm", x, "batch_norm_statistics")
    if statistics is None:
        mean, invstd, var = _reference_statistics(x, eps)
    else:
        mean, var = x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
        statistics(x, mean, var)
        invstd = (var + eps).rsqrt()
    return (_apply(x, *_affine(mean, invstd, weight, bias), activation, negative_slope), mean, invstd, var)


def _backward(grad_output, input, output, mean, invstd, weight, eps, activation, negative_slope):
    kernel = backends.optional("norm", input, "batch_norm_backward")
    if kernel is None or torch.is_grad_enabled():
        return _reference_backward(grad_output, input, output, weight, eps, activation, negative_slope)
    x = input.contiguous()
    grad_input = _alloc.empty(x.shape, x)
    grad_weight, grad_bias = x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
    kernel(grad_output.contiguous(), x, output.contiguous() if activation else None, mean, invstd,
           None if weight is None else weight.contiguous(), grad_input, grad_weight, grad_bias, activation,
           negative_slope)
    return grad_input, grad_weight, grad_bias


# --- custom ops ------------------------------------------------------------------------------------------

@torch.library.custom_op("medkern::batch_norm", mutates_args=())
def batch_norm_op(input: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float, activation: int,
                  negative_slope: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(output, mean, invstd, biased var) with the batch's statistics."""
    return _train(input, weight, bias, eps, activation, negative_slope)


@batch_norm_op.register_fake
def _(input, weight, bias, eps, activation, negative_slope):
    c = input.shape[1]
    return input.new_empty(input.shape), input.new_empty(c), input.new_empty(c), input.new_empty(c)


@torch.library.custom_op("medkern::batch_norm_backward", mutates_args=())
def batch_norm_backward_op(grad_output: Tensor, input: Tensor, output: Tensor, mean: Tensor, invstd: Tensor,
                           weight: Optional[Tensor], eps: float, activation: int,
                           negative_slope: float) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_input, grad_weight, grad_bias); ``output`` (the forward's) is read only with an activation."""
    with torch.no_grad():
        return _backward(grad_output, input, output, mean, invstd, weight, eps, activation, negative_slope)


@batch_norm_backward_op.register_fake
def _(grad_output, input, output, mean, invstd, weight, eps, activation, negative_slope):
    c = input.shape[1]
    return input.new_empty(input.shape), input.new_empty(c), input.new_empty(c)


def _setup(ctx, inputs, output):
    input, weight, bias, eps, activation, negative_slope = inputs
    y, mean, invstd, _ = output
    # The output only where the activation's derivative is read off it (as torch's ReLU saves its own): a model may
    # add to a BatchNorm's output in place (a residual: out += identity).
    ctx.save_for_backward(input, weight, y if activation else None, mean, invstd)
    ctx.options = (eps, activation, negative_slope)
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(*output[1:])


def _gradients(ctx, grad_output, backward):
    """The three gradients a backward returns, by ``backward`` without a graph to build, else by torch's
    differentiable composition (a gradient penalty's first pass)."""
    input, weight, output, mean, invstd = ctx.saved_tensors
    eps, activation, negative_slope = ctx.options
    if torch.is_grad_enabled():
        gx, gw, gb = _reference_backward(grad_output, input, output, weight, eps, activation, negative_slope)
    else:
        gx, gw, gb = backward(grad_output, input, output, mean, invstd, weight, eps, activation, negative_slope)
    return gx, gw if weight is not None else None, gb if ctx.has_bias else None


def _op_backward(ctx, grad_output, _mean, _invstd, _var):
    return (*_gradients(ctx, grad_output, batch_norm_backward_op), None, None, None)


torch.library.register_autograd(batch_norm_op, _op_backward, setup_context=_setup)


class _BatchNormFunction(torch.autograd.Function):
    """The eager twin: the same kernels and backward without the dispatcher's round trip."""

    @staticmethod
    def forward(ctx, input, weight, bias, eps, activation, negative_slope):
        outputs = _train(input, weight, bias, eps, activation, negative_slope)
        _setup(ctx, (input, weight, bias, eps, activation, negative_slope), outputs)
        return outputs

    @staticmethod
    def backward(ctx, grad_output, _mean, _invstd, _var):
        return (*_gradients(ctx, grad_output, _backward), None, None, None)


_twin = _BatchNormFunction.apply


# --- public entry point ----------------------------------------------------------------------------------

def _checked(input, running_mean, running_var, weight, bias, momentum, eps):
    v.tensor(input, "input", (2, 3, 4, 5))
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if t is not None:
            v.tensor(t, name, (1,))
            if t.shape[0] != c:
                raise ValueError(f"{name}: expected {c} values (the input's channels), got {t.shape[0]}")
    v.same_device_dtype(input, "input", running_mean=running_mean, running_var=running_var, weight=weight,
                        bias=bias)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var: give both or neither")
    for name, x in (("momentum", momentum), ("eps", eps)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x < float("inf"):
            raise ValueError(f"{name}: expected a finite number >= 0, got {x!r}")


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """torch's rule: an exponential average with factor ``momentum``, the variance made unbiased."""
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var, alpha=momentum * count / (count - 1))


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5, activation: Optional[str] = None,
               negative_slope: float = 0.01) -> Tensor:
    """``act(F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps))`` with
    ``act`` None, ``"relu"`` or ``"leaky_relu"`` (``negative_slope`` >= 0), in torch's semantics: batch
    statistics in training or without running statistics, which training then updates in place."""
    _checked(input, running_mean, running_var, weight, bias, momentum, eps)
    act = v.activation(activation, negative_slope)
    eps = float(eps)
    if not training and running_mean is not None:
        if not route(True, False, False, input, weight, bias):  # gradients wanted, or a tracer: torch's ops
            return _activate(F.batch_norm(input, running_mean, running_var, weight, bias, False, 0.0, eps), *act)
        invstd = (running_var + eps).rsqrt()
        return _apply(input.contiguous(), *_affine(running_mean, invstd, weight, bias), *act)
    count = input.numel() // input.shape[1]
    if training and count <= 1:
        raise ValueError(f"input: expected more than 1 value per channel when training, got shape "
                         f"{tuple(input.shape)}")
    output, mean, _, var = route(_train, _twin, batch_norm_op, input, weight, bias)(input, weight, bias, eps, *act)
    if training and running_mean is not None:
        _update_running(running_mean, running_var, mean, var, count, float(momentum))
    return output

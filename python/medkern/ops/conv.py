"""Convolution ops: validation, the ``torch.library`` custom ops with fake kernels and autograd, and the
no-grad fast path. Kernels come from the selected backend (``medkern.backends``).

Every backward piece is itself a custom op with registered autograd, so gradients of gradients
compose (``gradgradcheck``; a WGAN-GP gradient penalty through a medkern discriminator).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import backends
from .._geometry import Conv2dParams, conv_out_size
from . import _alloc, _validate as v
from ._dispatch import fast_path_ok

__all__ = ["conv2d", "conv2d_output_shape"]


def _normalise_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Validates a conv2d call; returns (stride, padding as (top, left, bottom, right), dilation, groups)."""
    K, Cg, R, S = weight.shape
    C, H, W = input.shape[1:]
    stride = v.int_tuple(stride, "stride", 2, minimum=1)
    dilation = v.int_tuple(dilation, "dilation", 2, minimum=1)
    groups = v.integer(groups, "groups", minimum=1)
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError("padding: 'same' is not supported for strided convolutions (stride must be 1)")
            total_h, total_w = dilation[0] * (R - 1), dilation[1] * (S - 1)
            pad = (total_h // 2, total_w // 2, total_h - total_h // 2, total_w - total_w // 2)
        else:
            raise ValueError(f"padding: expected an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = v.int_tuple(padding, "padding", 2, minimum=0)
        pad = (ph, pw, ph, pw)
    if min(K, Cg, R, S) < 1:
        raise ValueError(f"weight: every size must be positive, got shape {tuple(weight.shape)}")
    if min(C, H, W) < 1:
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(input.shape)}")
    if C % groups or K % groups:
        raise ValueError(f"groups: {groups} must divide both the input channels ({C}) and the output channels ({K})")
    if Cg * groups != C:
        raise ValueError(f"weight: expected {C // groups} input channels per group (input has {C} channels in "
                         f"{groups} groups), got weight of shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (K,):
        raise ValueError(f"bias: expected shape ({K},), got {tuple(bias.shape)}")
    P = conv_out_size(H, R, stride[0], pad[0] + pad[2], dilation[0])
    Q = conv_out_size(W, S, stride[1], pad[1] + pad[3], dilation[1])
    if P < 1 or Q < 1:
        raise ValueError(f"input: spatial size ({H}, {W}) plus padding is smaller than the dilated kernel "
                         f"({dilation[0] * (R - 1) + 1}, {dilation[1] * (S - 1) + 1})")
    return list(stride), list(pad), list(dilation), groups


def conv2d_output_shape(input_shape, weight_shape, stride, padding, dilation):
    """(N, K, P, Q) for normalised geometry (padding as (top, left, bottom, right))."""
    N, _, H, W = input_shape
    K, _, R, S = weight_shape
    return (N, K, conv_out_size(H, R, stride[0], padding[0] + padding[2], dilation[0]),
            conv_out_size(W, S, stride[1], padding[1] + padding[3], dilation[1]))


def _params(stride, padding, dilation, groups) -> Conv2dParams:
    return Conv2dParams(tuple(stride), (padding[0], padding[1]), tuple(dilation), groups)


def _kernels(t: Tensor):
    return backends.family("conv", t.device.type)


# --- implementations (shared by the fast path and the custom ops) -------------------------------------

def _forward(input, weight, bias, stride, padding, dilation, groups):
    out = _alloc.empty(conv2d_output_shape(input.shape, weight.shape, stride, padding, dilation), input)
    if out.numel():
        _kernels(input).conv2d_forward(input.contiguous(), weight.contiguous(),
                                       None if bias is None else bias.contiguous(), out,
                                       _params(stride, padding, dilation, groups))
    return out


def _grad_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    grad_x = _alloc.empty(input_size, grad_output)
    if grad_x.numel():
        _kernels(grad_output).conv2d_grad_input(grad_output.contiguous(), weight.contiguous(), grad_x,
                                                _params(stride, padding, dilation, groups))
    return grad_x


def _grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    if input.shape[0] == 0:
        return grad_output.new_zeros(weight_size)
    grad_w = _alloc.empty(weight_size, grad_output)
    _kernels(input).conv2d_grad_weight(grad_output.contiguous(), input.contiguous(), grad_w,
                                       _params(stride, padding, dilation, groups))
    return grad_w


def _grad_bias(grad_output):
    if grad_output.shape[0] == 0:
        return grad_output.new_zeros(grad_output.shape[1])
    grad_b = _alloc.empty((grad_output.shape[1],), grad_output)
    _kernels(grad_output).conv2d_grad_bias(grad_output.contiguous(), grad_b)
    return grad_b


# --- custom ops ---------------------------------------------------------------------------------------

@torch.library.custom_op("medkern::conv2d", mutates_args=())
def conv2d_op(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: list[int],
              dilation: list[int], groups: int) -> Tensor:
    """Normalised conv2d: padding is (top, left, bottom, right)."""
    return _forward(input, weight, bias, stride, padding, dilation, groups)


@torch.library.custom_op("medkern::conv2d_grad_input", mutates_args=())
def conv2d_grad_input_op(grad_output: Tensor, weight: Tensor, input_size: list[int], stride: list[int],
                         padding: list[int], dilation: list[int], groups: int) -> Tensor:
    return _grad_input(grad_output, weight, input_size, stride, padding, dilation, groups)


@torch.library.custom_op("medkern::conv2d_grad_weight", mutates_args=())
def conv2d_grad_weight_op(grad_output: Tensor, input: Tensor, weight_size: list[int], stride: list[int],
                          padding: list[int], dilation: list[int], groups: int) -> Tensor:
    return _grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups)


@torch.library.custom_op("medkern::conv2d_grad_bias", mutates_args=())
def conv2d_grad_bias_op(grad_output: Tensor) -> Tensor:
    return _grad_bias(grad_output)


@conv2d_op.register_fake
def _(input, weight, bias, stride, padding, dilation, groups):
    return input.new_empty(conv2d_output_shape(input.shape, weight.shape, stride, padding, dilation))


@conv2d_grad_input_op.register_fake
def _(grad_output, weight, input_size, stride, padding, dilation, groups):
    return grad_output.new_empty(input_size)


@conv2d_grad_weight_op.register_fake
def _(grad_output, input, weight_size, stride, padding, dilation, groups):
    return grad_output.new_empty(weight_size)


@conv2d_grad_bias_op.register_fake
def _(grad_output):
    return grad_output.new_empty(grad_output.shape[1])


# --- autograd: each backward is made of the custom ops above, so it is differentiable again ----------
# With y = conv(x, w): the grad-input map is linear in (dy, w) and the grad-weight map in (dy, x); their
# adjoints are again forward convolutions and grad maps.

def _save_geometry(ctx, stride, padding, dilation, groups):
    ctx.geometry = (stride, padding, dilation, groups)


def _conv2d_setup(ctx, inputs, output):
    input, weight, bias, *geometry = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None
    _save_geometry(ctx, *geometry)


def _conv2d_backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    g = ctx.geometry
    gx = conv2d_grad_input_op(grad_output, weight, list(input.shape), *g) if ctx.needs_input_grad[0] else None
    gw = conv2d_grad_weight_op(grad_output, input, list(weight.shape), *g) if ctx.needs_input_grad[1] else None
    gb = conv2d_grad_bias_op(grad_output) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None, None, None, None


def _grad_input_setup(ctx, inputs, output):
    grad_output, weight, _input_size, *geometry = inputs
    ctx.save_for_backward(grad_output, weight)
    _save_geometry(ctx, *geometry)


def _grad_input_backward(ctx, gg):
    grad_output, weight = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = conv2d_op(gg, weight, None, *g) if ctx.needs_input_grad[0] else None
    d_weight = conv2d_grad_weight_op(grad_output, gg, list(weight.shape), *g) if ctx.needs_input_grad[1] else None
    return d_grad_output, d_weight, None, None, None, None, None


def _grad_weight_setup(ctx, inputs, output):
    grad_output, input, _weight_size, *geometry = inputs
    ctx.save_for_backward(grad_output, input)
    _save_geometry(ctx, *geometry)


def _grad_weight_backward(ctx, gg):
    grad_output, input = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = conv2d_op(input, gg, None, *g) if ctx.needs_input_grad[0] else None
    d_input = conv2d_grad_input_op(grad_output, gg, list(input.shape), *g) if ctx.needs_input_grad[1] else None
    return d_grad_output, d_input, None, None, None, None, None


def _grad_bias_setup(ctx, inputs, output):
    ctx.grad_output_shape = inputs[0].shape


def _grad_bias_backward(ctx, gg):
    return gg.view(1, -1, 1, 1).expand(ctx.grad_output_shape)


torch.library.register_autograd("medkern::conv2d", _conv2d_backward, setup_context=_conv2d_setup)
torch.library.register_autograd("medkern::conv2d_grad_input", _grad_input_backward, setup_context=_grad_input_setup)
torch.library.register_autograd("medkern::conv2d_grad_weight", _grad_weight_backward,
                                setup_context=_grad_weight_setup)
torch.library.register_autograd("medkern::conv2d_grad_bias", _grad_bias_backward, setup_context=_grad_bias_setup)


# --- public entry point -----------------------------------------------------------------------------

def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution with the signature and semantics of ``torch.nn.functional.conv2d``.

    ``input`` is (N, C, H, W) or unbatched (C, H, W); float32 or float64, CPU or CUDA; padding an int, a
    pair, ``'same'`` or ``'valid'``. Differentiable to any order. Outputs are contiguous NCHW.
    """
    v.tensor(input, "input", (3, 4))
    v.tensor(weight, "weight", (4,))
    if bias is not None:
        v.tensor(bias, "bias", (1,))
    v.same_device_dtype(input, "input", weight=weight, bias=bias)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    geometry = _normalise_conv2d(x, weight, bias, stride, padding, dilation, groups)
    if fast_path_ok(x, weight, bias):
        y = _forward(x, weight, bias, *geometry)
    else:
        y = conv2d_op(x, weight, bias, *geometry)
    return y.squeeze(0) if unbatched else y

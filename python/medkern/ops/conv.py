"""Convolution ops: validation, the ``torch.library`` custom ops with fake kernels and autograd, and the
no-grad fast path. Kernels come from the selected backend (``medkern.backends``).

Every backward piece is itself a custom op with registered autograd, so gradients of gradients
compose (``gradgradcheck``; a WGAN-GP gradient penalty through a medkern discriminator).
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from .. import backends
from .._geometry import ACTIVATIONS, ConvParams, conv_out_size
from . import _alloc, _validate as v
from ._conv_geometry import conv_geometry
from ._dispatch import grad_wanted, route

__all__ = ["conv1d", "conv2d", "conv2d_output_shape", "conv_transpose2d"]


def _normalise_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Validates a conv2d call; returns (stride, padding as (top, left, bottom, right), dilation, groups).

    The answer depends on the shapes and the geometry arguments only, and a model asks the same few
    questions every step: answers are remembered (a third of a small convolution's 18 us of Python) when
    every argument is an int, a tuple of ints or a string. Anything else (lists, floats, bools, which equal
    ints as keys) is checked every time, as is every call under torch.compile."""
    args = (input.shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation, groups)
    cached = all(map(_plain, args[3:])) and not torch.compiler.is_compiling()  # dynamo warns about caches
    check = _normalise_shapes if cached else _normalise_shapes.__wrapped__
    stride, pad, dilation, groups = check(*args)
    return list(stride), list(pad), list(dilation), groups


def _plain(a) -> bool:
    t = type(a)
    return t is int or t is str or (t is tuple and all(type(e) is int for e in a))


@functools.lru_cache(maxsize=1024)
def _normalise_shapes(input_shape, weight_shape, bias_shape, stride, padding, dilation, groups):
    g = conv_geometry(input_shape, weight_shape, bias_shape, stride, padding, dilation, groups)
    return g.stride, g.padding, g.dilation, g.groups


def conv2d_output_shape(input_shape, weight_shape, stride, padding, dilation):
    """(N, K, P, Q) for normalised geometry (padding as (top, left, bottom, right))."""
    N, _, H, W = input_shape
    K, _, R, S = weight_shape
    return (N, K, conv_out_size(H, R, stride[0], padding[0] + padding[2], dilation[0]),
            conv_out_size(W, S, stride[1], padding[1] + padding[3], dilation[1]))


def _normalise_activation(activation, negative_slope) -> tuple[int, float]:
    """(ACTIVATIONS code, slope). The backward reads the activation's derivative off the output, which
    only works for slopes >= 0 (with a negative slope a positive output can come from a negative input)."""
    if activation is None:
        return 0, 0.0
    if activation not in ("relu", "leaky_relu"):
        raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")
    if activation == "relu":
        return ACTIVATIONS["relu"], 0.0
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        raise TypeError(f"negative_slope: expected a float, got {type(negative_slope).__name__}")
    if not 0.0 <= negative_slope < float("inf"):
        raise ValueError(f"negative_slope: the fused leaky_relu needs a finite slope >= 0, got {negative_slope}")
    return ACTIVATIONS["leaky_relu"], float(negative_slope)


def _params(stride, padding, dilation, groups, activation=0, negative_slope=0.0) -> ConvParams:
    return ConvParams(tuple(stride), (padding[0], padding[1]), tuple(dilation), groups, activation, negative_slope)


def _kernels(t: Tensor):
    return backends.for_tensor("conv", t)


# --- implementations (shared by the fast path and the custom ops) -------------------------------------

def _forward(input, weight, bias, stride, padding, dilation, groups, activation=0, negative_slope=0.0):
    out = _alloc.empty(conv2d_output_shape(input.shape, weight.shape, stride, padding, dilation), input)
    if out.numel():
        _kernels(input).conv2d_forward(input.contiguous(), weight.contiguous(),
                                       None if bias is None else bias.contiguous(), out,
                                       _params(stride, padding, dilation, groups, activation, negative_slope))
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
              dilation: list[int], groups: int, activation: int = 0, negative_slope: float = 0.0) -> Tensor:
    """Normalised conv2d: padding is (top, left, bottom, right); activation an ACTIVATIONS code fused
    into the output pass."""
    return _forward(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope)


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
def _(input, weight, bias, stride, padding, dilation, groups, activation=0, negative_slope=0.0):
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
    input, weight, bias, stride, padding, dilation, groups, activation, negative_slope = inputs
    ctx.activation, ctx.negative_slope = activation, negative_slope
    ctx.save_for_backward(input, weight, output if activation else None)
    ctx.has_bias = bias is not None
    _save_geometry(ctx, stride, padding, dilation, groups)


def _activation_grad(grad_output, output, activation, negative_slope):
    """d act / d z from the fused output alone: with a slope >= 0, output > 0 exactly where z > 0 (torch's
    relu backward also tests the result; leaky_relu's tests z > 0, the same set)."""
    if activation == ACTIVATIONS["relu"]:
        return torch.where(output > 0, grad_output, torch.zeros_like(grad_output))
    return torch.where(output > 0, grad_output, grad_output * negative_slope)


def _conv2d_backward(ctx, grad_output, ops=None):
    ops = ops or _CUSTOM
    input, weight, output = ctx.saved_tensors
    g = ctx.geometry
    if ctx.activation:
        grad_output = _activation_grad(grad_output, output, ctx.activation, ctx.negative_slope)
    gx = ops.grad_input(grad_output, weight, list(input.shape), *g) if grad_wanted(ctx, 0, input) else None
    gw = ops.grad_weight(grad_output, input, list(weight.shape), *g) if grad_wanted(ctx, 1, weight) else None
    gb = ops.grad_bias(grad_output) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None, None, None, None, None, None


def _grad_map_setup(ctx, inputs, output):
    """The grad-input and grad-weight maps are linear in their two tensors (grad_output and the weight, or
    grad_output and the input): their backwards need both, and the geometry."""
    grad_output, other, _size, *geometry = inputs
    ctx.save_for_backward(grad_output, other)
    _save_geometry(ctx, *geometry)


def _grad_input_backward(ctx, gg, ops=None):
    ops = ops or _CUSTOM
    grad_output, weight = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = ops.forward(gg, weight, None, *g, 0, 0.0) if grad_wanted(ctx, 0, grad_output) else None
    d_weight = ops.grad_weight(grad_output, gg, list(weight.shape), *g) if grad_wanted(ctx, 1, weight) else None
    return d_grad_output, d_weight, None, None, None, None, None


def _grad_weight_backward(ctx, gg, ops=None):
    ops = ops or _CUSTOM
    grad_output, input = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = ops.forward(input, gg, None, *g, 0, 0.0) if grad_wanted(ctx, 0, grad_output) else None
    d_input = ops.grad_input(grad_output, gg, list(input.shape), *g) if grad_wanted(ctx, 1, input) else None
    return d_grad_output, d_input, None, None, None, None, None


def _grad_bias_setup(ctx, inputs, output):
    ctx.grad_output_shape = inputs[0].shape


def _grad_bias_backward(ctx, gg):
    return gg.view(1, -1, 1, 1).expand(ctx.grad_output_shape)


class _ConvOps(NamedTuple):
    """The four conv2d maps a backward is built from: the custom ops, or their eager twins below."""
    forward: Callable
    grad_input: Callable
    grad_weight: Callable
    grad_bias: Callable


_CUSTOM = _ConvOps(conv2d_op, conv2d_grad_input_op, conv2d_grad_weight_op, conv2d_grad_bias_op)


# --- eager autograd: in a plain eager call the same graph is built from autograd.Functions, which skip the
# dispatcher and the custom op's autograd wrapper (about 90 us a call, against 75 us of kernel for a GAN
# critic's first layer). Their backwards are made of the same eager maps, so they differentiate again.

def _autograd_function(name, kernel, setup, backward):
    # The forward(ctx, ...) form: a separate setup_context made each apply cost 20 us instead of 6.
    def forward(ctx, *args):
        out = kernel(*args)
        setup(ctx, args, out)
        return out
    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "backward": staticmethod(lambda ctx, g: backward(ctx, g, _EAGER)),
    })


def _eager(kernel, function, op, tensors: int):
    """A map as the eager backwards call it, routed like any op call (``_dispatch.route``); its first
    ``tensors`` arguments are its tensors."""
    apply = function.apply

    def call(*args):
        return route(kernel, apply, op, *args[:tensors])(*args)
    return call


_Conv2dFunction = _autograd_function("_Conv2dFunction", _forward, _conv2d_setup, _conv2d_backward)
_GradInputFunction = _autograd_function("_GradInputFunction", _grad_input, _grad_map_setup, _grad_input_backward)
_GradWeightFunction = _autograd_function("_GradWeightFunction", _grad_weight, _grad_map_setup,
                                         _grad_weight_backward)
_GradBiasFunction = _autograd_function("_GradBiasFunction", _grad_bias, _grad_bias_setup,
                                       lambda ctx, g, ops: _grad_bias_backward(ctx, g))
# The twins' apply, looked up once (each `Function.apply` look-up makes a new bound method: 75 ns).
_conv2d_twin, _grad_input_twin = _Conv2dFunction.apply, _GradInputFunction.apply
_EAGER = _ConvOps(_eager(_forward, _Conv2dFunction, conv2d_op, 3),
                  _eager(_grad_input, _GradInputFunction, conv2d_grad_input_op, 2),
                  _eager(_grad_weight, _GradWeightFunction, conv2d_grad_weight_op, 2),
                  _eager(_grad_bias, _GradBiasFunction, conv2d_grad_bias_op, 1))


torch.library.register_autograd("medkern::conv2d", _conv2d_backward, setup_context=_conv2d_setup)
torch.library.register_autograd("medkern::conv2d_grad_input", _grad_input_backward, setup_context=_grad_map_setup)
torch.library.register_autograd("medkern::conv2d_grad_weight", _grad_weight_backward,
                                setup_context=_grad_map_setup)
torch.library.register_autograd("medkern::conv2d_grad_bias", _grad_bias_backward, setup_context=_grad_bias_setup)


# --- public entry points ----------------------------------------------------------------------------

def _checked_batch(input, weight, bias):
    """Type checks shared by the 2-D ops; returns (input as a batch, whether it was unbatched)."""
    v.tensor(input, "input", (3, 4))
    v.tensor(weight, "weight", (4,))
    if bias is not None:
        v.tensor(bias, "bias", (1,))
    v.same_device_dtype(input, "input", weight=weight, bias=bias)
    unbatched = input.dim() == 3
    return (input.unsqueeze(0) if unbatched else input), unbatched


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
           groups: int = 1, activation: Optional[str] = None, negative_slope: float = 0.01) -> Tensor:
    """2-D convolution with the signature and semantics of ``torch.nn.functional.conv2d``.

    ``input`` is (N, C, H, W) or unbatched (C, H, W); float32 or float64, CPU or CUDA; padding an int, a
    pair, ``'same'`` or ``'valid'``. ``activation`` (``'relu'`` or ``'leaky_relu'`` with
    ``negative_slope >= 0``) is applied to conv + bias inside the kernel's output pass, which equals
    ``F.relu(F.conv2d(...))`` / ``F.leaky_relu(..., negative_slope)`` without a second pass over the output.
    Differentiable to any order. Outputs are contiguous NCHW.
    """
    act = _normalise_activation(activation, negative_slope)
    x, unbatched = _checked_batch(input, weight, bias)
    geometry = _normalise_conv2d(x, weight, bias, stride, padding, dilation, groups)
    y = route(_forward, _conv2d_twin, conv2d_op, x, weight, bias)(x, weight, bias, *geometry, *act)
    return y.squeeze(0) if unbatched else y


def conv1d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
           groups: int = 1, activation: Optional[str] = None, negative_slope: float = 0.01) -> Tensor:
    """1-D convolution with the signature and semantics of ``torch.nn.functional.conv1d`` (plus the fused
    ``activation`` of :func:`conv2d`): ``input`` (N, C, L) or unbatched (C, L), weight (K, C/groups, S).

    It runs as a conv2d over a height-1 image (a view, no copy), so every backend, the custom ops and
    their derivatives of any order are conv2d's."""
    v.tensor(input, "input", (2, 3))
    v.tensor(weight, "weight", (3,))
    stride = v.int_tuple(stride, "stride", 1, minimum=1)
    dilation = v.int_tuple(dilation, "dilation", 1, minimum=1)
    padding = padding if isinstance(padding, str) else v.int_tuple(padding, "padding", 1, minimum=0)
    padding_2d = padding if isinstance(padding, str) else (0, padding[0])
    y = conv2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, (1, stride[0]), padding_2d, (1, dilation[0]),
               groups, activation, negative_slope)
    return y.squeeze(-2)


def _normalise_conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation):
    """Validates a conv_transpose2d call; returns (output size, stride, padding, dilation, groups) of the
    convolution whose input gradient it is."""
    Cin, Cout_g, R, S = weight.shape
    N, C, H, W = x.shape
    stride = v.int_tuple(stride, "stride", 2, minimum=1)
    dilation = v.int_tuple(dilation, "dilation", 2, minimum=1)
    padding = v.int_tuple(padding, "padding", 2, minimum=0)
    output_padding = v.int_tuple(output_padding, "output_padding", 2, minimum=0)
    groups = v.integer(groups, "groups", minimum=1)
    if min(Cin, Cout_g, R, S) < 1:
        raise ValueError(f"weight: every size must be positive, got shape {tuple(weight.shape)}")
    if min(C, H, W) < 1:
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(x.shape)}")
    if C != Cin:
        raise ValueError(f"weight: expected {C} input channels in dim 0 (input has {C} channels), got weight of "
                         f"shape {tuple(weight.shape)}")
    if Cin % groups:
        raise ValueError(f"groups: {groups} must divide the input channels ({Cin})")
    if bias is not None and tuple(bias.shape) != (Cout_g * groups,):
        raise ValueError(f"bias: expected shape ({Cout_g * groups},), got {tuple(bias.shape)}")
    for op, s_, d in zip(output_padding, stride, dilation):
        if op >= max(s_, d):
            raise ValueError(f"output_padding: {output_padding} must be smaller than either stride {stride} or "
                             f"dilation {dilation}")
    out_hw = [(n - 1) * s_ - 2 * p + d * (k - 1) + op + 1
              for n, s_, p, d, k, op in zip((H, W), stride, padding, dilation, (R, S), output_padding)]
    if min(out_hw) < 1:
        raise ValueError(f"input: output size {tuple(out_hw)} of the transposed convolution is not positive "
                         f"(padding {padding} too large)")
    # The transposed convolution maps out_hw back to (H, W): its trailing padding is padding - output_padding
    # (negative: it crops), which makes its derivatives (conv2d_op of the output size) agree in shape.
    pads = [padding[0], padding[1], padding[0] - output_padding[0], padding[1] - output_padding[1]]
    return [N, Cout_g * groups, *out_hw], list(stride), pads, list(dilation), groups


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution with the signature and semantics of ``torch.nn.functional.conv_transpose2d``:
    ``input`` (N, Cin, H, W) or unbatched, weight (Cin, Cout/groups, R, S).

    It is the input gradient of the convolution it transposes, so it runs the ``conv2d_grad_input`` kernels
    and custom op; its own derivatives (a forward convolution, a weight gradient) and their derivatives come
    from that op's registered autograd."""
    x, unbatched = _checked_batch(input, weight, bias)
    out_size, *geometry = _normalise_conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                                      dilation)
    run = route(_grad_input, _grad_input_twin, conv2d_grad_input_op, x, weight, bias)
    y = run(x, weight, out_size, *geometry)
    if bias is not None:
        # In place where no graph records it: the kernel's own output, on the fast path.
        y = y.add_(bias.view(1, -1, 1, 1)) if run is _grad_input else y + bias.view(1, -1, 1, 1)
    return y.squeeze(0) if unbatched else y

"""Convolution ops: validation, the ``torch.library`` custom ops with fake kernels and autograd, and the
no-grad fast path, for 1-, 2- and 3-d convolutions and their transposes. Kernels come from the selected
backend (``medkern.backends``). One implementation serves every rank: a 1-d convolution is a 2-d one of
height 1, and the 2-d and 3-d ones differ only in the backend entry their tensors' rank selects
(``conv2d_*`` / ``conv3d_*``) and in the custom ops that name them for tracers.

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

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d"]


def _normalise_conv(input, weight, bias, stride, padding, dilation, groups):
    """Validates a convolution call; returns (stride, padding as leading then trailing per axis (2-d: top,
    left, bottom, right), dilation, groups).

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


def _output_shape(input_shape, weight_shape, stride, padding, dilation):
    """(N, K, *spatial) for normalised geometry (padding: leading then trailing per axis)."""
    d = len(stride)
    return (input_shape[0], weight_shape[0],
            *(conv_out_size(n, k, s_, padding[i] + padding[d + i], dl)
              for i, (n, k, s_, dl) in enumerate(zip(input_shape[2:], weight_shape[2:], stride, dilation))))


def _params(stride, padding, dilation, groups, activation=0, negative_slope=0.0) -> ConvParams:
    return ConvParams(tuple(stride), tuple(padding[:len(stride)]), tuple(dilation), groups, activation,
                      negative_slope)


def _kernel(t: Tensor, map_name: str):
    """The backend's entry for a call on tensors like ``t``: conv2d_<map> for 4-d tensors, conv3d_<map> for 5-d."""
    return backends.entry("conv", t, f"conv{t.dim() - 2}d_{map_name}")


# --- implementations (shared by the fast path and the custom ops) -------------------------------------

def _forward(input, weight, bias, stride, padding, dilation, groups, activation=0, negative_slope=0.0):
    out = _alloc.empty(_output_shape(input.shape, weight.shape, stride, padding, dilation), input)
    if out.numel():
        _kernel(input, "forward")(input.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
                                  out, _params(stride, padding, dilation, groups, activation, negative_slope))
    return out


def _grad_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    grad_x = _alloc.empty(input_size, grad_output)
    if grad_x.numel():
        _kernel(grad_output, "grad_input")(grad_output.contiguous(), weight.contiguous(), grad_x,
                                           _params(stride, padding, dilation, groups))
    return grad_x


def _grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    if input.shape[0] == 0:
        return grad_output.new_zeros(weight_size)
    grad_w = _alloc.empty(weight_size, grad_output)
    _kernel(input, "grad_weight")(grad_output.contiguous(), input.contiguous(), grad_w,
                                  _params(stride, padding, dilation, groups))
    return grad_w


def _grad_bias(grad_output):
    """Sums over every axis but the channels; a volume's gradient is seen as (N, K, O*P, Q) (one kernel)."""
    N, K = grad_output.shape[:2]
    if N == 0:
        return grad_output.new_zeros(K)
    grad_b = _alloc.empty((K,), grad_output)
    dy = grad_output.contiguous()
    backends.entry("conv", dy, "conv2d_grad_bias")(dy.view(N, K, -1, dy.shape[-1]), grad_b)
    return grad_b


# --- custom ops: one set per rank (medkern::conv2d*, medkern::conv3d*), over the same implementations; the bias
# gradient's op serves both ---------------------------------------------------------------------------------

def _conv_body(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: list[int],
               dilation: list[int], groups: int, activation: int = 0, negative_slope: float = 0.0) -> Tensor:
    """Normalised convolution: padding is leading then trailing per axis (2-d: top, left, bottom, right);
    activation an ACTIVATIONS code fused into the output pass."""
    return _forward(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope)


def _grad_input_body(grad_output: Tensor, weight: Tensor, input_size: list[int], stride: list[int],
                     padding: list[int], dilation: list[int], groups: int) -> Tensor:
    return _grad_input(grad_output, weight, input_size, stride, padding, dilation, groups)


def _grad_weight_body(grad_output: Tensor, input: Tensor, weight_size: list[int], stride: list[int],
                      padding: list[int], dilation: list[int], groups: int) -> Tensor:
    return _grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups)


def _grad_bias_body(grad_output: Tensor) -> Tensor:
    return _grad_bias(grad_output)


def _fake_forward(input, weight, bias, stride, padding, dilation, groups, activation=0, negative_slope=0.0):
    return input.new_empty(_output_shape(input.shape, weight.shape, stride, padding, dilation))


def _fake_grad_input(grad_output, weight, input_size, stride, padding, dilation, groups):
    return grad_output.new_empty(input_size)


def _fake_grad_weight(grad_output, input, weight_size, stride, padding, dilation, groups):
    return grad_output.new_empty(weight_size)


def _custom_op(name, body, fake):
    op = torch.library.custom_op(f"medkern::{name}", body, mutates_args=())
    op.register_fake(fake)
    return op


conv2d_op = _custom_op("conv2d", _conv_body, _fake_forward)
conv2d_grad_input_op = _custom_op("conv2d_grad_input", _grad_input_body, _fake_grad_input)
conv2d_grad_weight_op = _custom_op("conv2d_grad_weight", _grad_weight_body, _fake_grad_weight)
conv3d_op = _custom_op("conv3d", _conv_body, _fake_forward)
conv3d_grad_input_op = _custom_op("conv3d_grad_input", _grad_input_body, _fake_grad_input)
conv3d_grad_weight_op = _custom_op("conv3d_grad_weight", _grad_weight_body, _fake_grad_weight)
# Sums over every axis but the channels, whatever the rank.
conv_grad_bias_op = _custom_op("conv2d_grad_bias", _grad_bias_body, lambda grad_output: grad_output.new_empty(
    grad_output.shape[1]))


# --- autograd: each backward is made of the custom ops above, so it is differentiable again ----------
# With y = conv(x, w): the grad-input map is linear in (dy, w) and the grad-weight map in (dy, x); their
# adjoints are again forward convolutions and grad maps.

def _save_geometry(ctx, stride, padding, dilation, groups):
    ctx.geometry = (stride, padding, dilation, groups)


def _conv_setup(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, activation, negative_slope = inputs
    ctx.activation, ctx.negative_slope = activation, negative_slope
    ctx.save_for_backward(input, weight, output if activation else None)
    ctx.has_bias = bias is not None
    _save_geometry(ctx, stride, padding, dilation, groups)


def _activation_grad(grad_output, output, activation, negative_slope):
    """d act / d z from the fused output alone: with a slope >= 0, output > 0 exactly where z > 0 (torch's
    relu backward also tests the result; leaky_relu's tests z > 0, the same set)."""
    # ATen's own backward kernels, one pass each (a torch.where over a comparison made three: 10 ms of a GAN step
    # against 3), and differentiable again.
    if activation == ACTIVATIONS["relu"]:
        return torch.ops.aten.threshold_backward(grad_output, output, 0.0)
    return torch.ops.aten.leaky_relu_backward(grad_output, output, negative_slope, True)


def _rank(ctx) -> int:
    """The spatial rank of the convolution a backward belongs to (2 or 3): its stride's length."""
    return len(ctx.geometry[0])


def _conv_backward(ctx, grad_output, ops=None):
    ops = ops or _CUSTOM[_rank(ctx)]
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
    ops = ops or _CUSTOM[_rank(ctx)]
    grad_output, weight = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = ops.forward(gg, weight, None, *g, 0, 0.0) if grad_wanted(ctx, 0, grad_output) else None
    d_weight = ops.grad_weight(grad_output, gg, list(weight.shape), *g) if grad_wanted(ctx, 1, weight) else None
    return d_grad_output, d_weight, None, None, None, None, None


def _grad_weight_backward(ctx, gg, ops=None):
    ops = ops or _CUSTOM[_rank(ctx)]
    grad_output, input = ctx.saved_tensors
    g = ctx.geometry
    d_grad_output = ops.forward(input, gg, None, *g, 0, 0.0) if grad_wanted(ctx, 0, grad_output) else None
    d_input = ops.grad_input(grad_output, gg, list(input.shape), *g) if grad_wanted(ctx, 1, input) else None
    return d_grad_output, d_input, None, None, None, None, None


def _grad_bias_setup(ctx, inputs, output):
    ctx.grad_output_shape = inputs[0].shape


def _grad_bias_backward(ctx, gg):
    shape = ctx.grad_output_shape
    return gg.view(1, -1, *(1,) * (len(shape) - 2)).expand(shape)


class _ConvOps(NamedTuple):
    """The four maps a backward is built from: the custom ops, or their eager twins below."""
    forward: Callable
    grad_input: Callable
    grad_weight: Callable
    grad_bias: Callable


# spatial rank -> the custom ops of that rank
_CUSTOM = {2: _ConvOps(conv2d_op, conv2d_grad_input_op, conv2d_grad_weight_op, conv_grad_bias_op),
           3: _ConvOps(conv3d_op, conv3d_grad_input_op, conv3d_grad_weight_op, conv_grad_bias_op)}


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
        "backward": staticmethod(backward),
    })


def _with_eager_maps(backward):
    """A backward that builds its graph of the eager twins of its rank."""
    return lambda ctx, g: backward(ctx, g, _EAGER[_rank(ctx)])


def _eager(kernel, function, op, tensors: int):
    """A map as the eager backwards call it, routed like any op call (``_dispatch.route``); its first
    ``tensors`` arguments are its tensors."""
    apply = function.apply

    def call(*args):
        return route(kernel, apply, op, *args[:tensors])(*args)
    return call


_ConvFunction = _autograd_function("_ConvFunction", _forward, _conv_setup, _with_eager_maps(_conv_backward))
_GradInputFunction = _autograd_function("_GradInputFunction", _grad_input, _grad_map_setup,
                                        _with_eager_maps(_grad_input_backward))
_GradWeightFunction = _autograd_function("_GradWeightFunction", _grad_weight, _grad_map_setup,
                                         _with_eager_maps(_grad_weight_backward))
_GradBiasFunction = _autograd_function("_GradBiasFunction", _grad_bias, _grad_bias_setup, _grad_bias_backward)
# The twins' apply, looked up once (each `Function.apply` look-up makes a new bound method: 75 ns).
_conv_twin, _grad_input_twin = _ConvFunction.apply, _GradInputFunction.apply


def _eager_ops(custom: _ConvOps) -> _ConvOps:
    return _ConvOps(_eager(_forward, _ConvFunction, custom.forward, 3),
                    _eager(_grad_input, _GradInputFunction, custom.grad_input, 2),
                    _eager(_grad_weight, _GradWeightFunction, custom.grad_weight, 2),
                    _eager(_grad_bias, _GradBiasFunction, custom.grad_bias, 1))


_EAGER = {rank: _eager_ops(custom) for rank, custom in _CUSTOM.items()}

for _custom in _CUSTOM.values():
    torch.library.register_autograd(_custom.forward, _conv_backward, setup_context=_conv_setup)
    torch.library.register_autograd(_custom.grad_input, _grad_input_backward, setup_context=_grad_map_setup)
    torch.library.register_autograd(_custom.grad_weight, _grad_weight_backward, setup_context=_grad_map_setup)
torch.library.register_autograd(conv_grad_bias_op, _grad_bias_backward, setup_context=_grad_bias_setup)


# --- public entry points ----------------------------------------------------------------------------

def _checked_batch(input, weight, bias, d: int):
    """Type checks shared by the ops of spatial rank d; returns (input as a batch, whether it was unbatched)."""
    v.tensor(input, "input", (d + 1, d + 2))
    v.tensor(weight, "weight", (d + 2,))
    if bias is not None:
        v.tensor(bias, "bias", (1,))
    v.same_device_dtype(input, "input", weight=weight, bias=bias)
    unbatched = input.dim() == d + 1
    return (input.unsqueeze(0) if unbatched else input), unbatched


def _conv(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, d: int):
    act = v.activation(activation, negative_slope)
    x, unbatched = _checked_batch(input, weight, bias, d)
    geometry = _normalise_conv(x, weight, bias, stride, padding, dilation, groups)
    y = route(_forward, _conv_twin, _CUSTOM[d].forward, x, weight, bias)(x, weight, bias, *geometry, *act)
    return y.squeeze(0) if unbatched else y


def conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
           groups: int = 1, activation: Optional[str] = None, negative_slope: float = 0.01) -> Tensor:
    """2-D convolution with the signature and semantics of ``torch.nn.functional.conv2d``.

    ``input`` is (N, C, H, W) or unbatched (C, H, W); float32 or float64, CPU or CUDA; padding an int, a
    pair, ``'same'`` or ``'valid'``. ``activation`` (``'relu'`` or ``'leaky_relu'`` with
    ``negative_slope >= 0``) is applied to conv + bias inside the kernel's output pass, which equals
    ``F.relu(F.conv2d(...))`` / ``F.leaky_relu(..., negative_slope)`` without a second pass over the output.
    Differentiable to any order. Outputs are contiguous NCHW.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, 2)


def conv3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0, dilation=1,
           groups: int = 1, activation: Optional[str] = None, negative_slope: float = 0.01) -> Tensor:
    """3-D convolution with the signature and semantics of ``torch.nn.functional.conv3d`` (plus the fused
    ``activation`` of :func:`conv2d`): ``input`` (N, C, D, H, W) or unbatched (C, D, H, W), weight
    (K, C/groups, T, R, S); padding an int, a triple, ``'same'`` or ``'valid'``. channels_last_3d inputs are
    accepted (read as a contiguous copy). Differentiable to any order. Outputs are contiguous NCDHW.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, activation, negative_slope, 3)


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


def _normalise_conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation):
    """Validates a transposed convolution call of any rank; returns (output size, stride, padding, dilation,
    groups) of the convolution whose input gradient it is."""
    d = x.dim() - 2
    Cin, Cout_g, *kernel = weight.shape
    N, C, *size = x.shape
    stride = v.int_tuple(stride, "stride", d, minimum=1)
    dilation = v.int_tuple(dilation, "dilation", d, minimum=1)
    padding = v.int_tuple(padding, "padding", d, minimum=0)
    output_padding = v.int_tuple(output_padding, "output_padding", d, minimum=0)
    groups = v.integer(groups, "groups", minimum=1)
    if min(Cin, Cout_g, *kernel) < 1:
        raise ValueError(f"weight: every size must be positive, got shape {tuple(weight.shape)}")
    if min(C, *size) < 1:
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(x.shape)}")
    if C != Cin:
        raise ValueError(f"weight: expected {C} input channels in dim 0 (input has {C} channels), got weight of "
                         f"shape {tuple(weight.shape)}")
    if Cin % groups:
        raise ValueError(f"groups: {groups} must divide the input channels ({Cin})")
    if bias is not None and tuple(bias.shape) != (Cout_g * groups,):
        raise ValueError(f"bias: expected shape ({Cout_g * groups},), got {tuple(bias.shape)}")
    for op, s_, dl in zip(output_padding, stride, dilation):
        if op >= max(s_, dl):
            raise ValueError(f"output_padding: {output_padding} must be smaller than either stride {stride} or "
                             f"dilation {dilation}")
    out_size = [(n - 1) * s_ - 2 * p + dl * (k - 1) + op + 1
                for n, s_, p, dl, k, op in zip(size, stride, padding, dilation, kernel, output_padding)]
    if min(out_size) < 1:
        raise ValueError(f"input: output size {tuple(out_size)} of the transposed convolution is not positive "
                         f"(padding {padding} too large)")
    # The transposed convolution maps out_size back to the input's size: its trailing padding is padding -
    # output_padding (negative: it crops), which makes its derivatives (a convolution of the output size) agree
    # in shape.
    pads = [*padding, *(p - op for p, op in zip(padding, output_padding))]
    return [N, Cout_g * groups, *out_size], list(stride), pads, list(dilation), groups


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, d: int):
    x, unbatched = _checked_batch(input, weight, bias, d)
    out_size, *geometry = _normalise_conv_transpose(x, weight, bias, stride, padding, output_padding, groups,
                                                    dilation)
    run = route(_grad_input, _grad_input_twin, _CUSTOM[d].grad_input, x, weight, bias)
    y = run(x, weight, out_size, *geometry)
    if bias is not None:
        # In place where no graph records it: the kernel's own output, on the fast path.
        b = bias.view(1, -1, *(1,) * d)
        y = y.add_(b) if run is _grad_input else y + b
    return y.squeeze(0) if unbatched else y


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution with the signature and semantics of ``torch.nn.functional.conv_transpose2d``:
    ``input`` (N, Cin, H, W) or unbatched, weight (Cin, Cout/groups, R, S).

    It is the input gradient of the convolution it transposes, so it runs the ``conv2d_grad_input`` kernels
    and custom op; its own derivatives (a forward convolution, a weight gradient) and their derivatives come
    from that op's registered autograd."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2)


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 3-D convolution with the signature and semantics of ``torch.nn.functional.conv_transpose3d``:
    ``input`` (N, Cin, D, H, W) or unbatched, weight (Cin, Cout/groups, T, R, S); built as
    :func:`conv_transpose2d` is, on the ``conv3d_grad_input`` kernels and custom op."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3)

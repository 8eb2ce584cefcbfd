"""Pooling ops: max, average and adaptive pooling in 1-D and 2-D, with torch's signatures and semantics
(ceil_mode, count_include_pad, divisor_override, dilation, return_indices with torch's indices, NaN
propagation). 1-D pooling runs on the 2-D kernels with H = 1; unbatched inputs gain a batch of one.

Each 2-D op is a ``torch.library`` custom op with a fake kernel and autograd; every backward is a custom
op with autograd of its own (both are linear in the incoming gradient: the adjoint of scattering by
indices is gathering by them, the adjoint of average pooling's backward is average pooling), so double
backward works wherever torch has it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import backends
from .._geometry import PoolParams, pool_out_size
from . import _alloc, _validate as v
from ._dispatch import route

__all__ = ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
           "adaptive_max_pool1d", "adaptive_max_pool2d"]


def _kernels(t: Tensor):
    return backends.for_tensor("pool", t)


def _params(kernel, stride, padding, dilation=(1, 1)) -> PoolParams:
    return PoolParams(tuple(kernel), tuple(stride), tuple(padding), tuple(dilation))


def _out_hw(shape, kernel, stride, padding, dilation, ceil_mode):
    return tuple(pool_out_size(n, k, s, p, d, ceil_mode)
                 for n, k, s, p, d in zip(shape[-2:], kernel, stride, padding, dilation))


def _planes_out(x_shape, out_hw):
    return (*x_shape[:2], *out_hw)


# --- implementations shared by the fast path and the custom ops (each with its op's signature) ----------

def _max_forward(x, kernel, stride, padding, dilation, ceil_mode, with_indices):
    shape = _planes_out(x.shape, _out_hw(x.shape, kernel, stride, padding, dilation, ceil_mode))
    out = _alloc.empty(shape, x)
    indices = _alloc.empty(shape, x, torch.int64) if with_indices else None
    if out.numel():
        _kernels(x).max_pool2d_forward(x.contiguous(), out, indices, _params(kernel, stride, padding, dilation))
    return out, indices


def _max_values(x, kernel, stride, padding, dilation, ceil_mode):
    return _max_forward(x, kernel, stride, padding, dilation, ceil_mode, False)[0]


def _max_with_indices(x, kernel, stride, padding, dilation, ceil_mode):
    return _max_forward(x, kernel, stride, padding, dilation, ceil_mode, True)


def _max_backward(grad_out, indices, input_size):
    grad_x = _alloc.empty(input_size, grad_out)
    if grad_x.numel():
        if grad_out.numel():
            _kernels(grad_out).max_pool2d_backward(grad_out.contiguous(), indices.contiguous(), grad_x)
        else:
            grad_x.zero_()
    return grad_x


def _max_backward_from_input(grad_out, x, kernel, stride, padding, dilation):
    """The max-pool gradient from the input instead of stored indices: the backend's optional fused entry
    where it declares one (native CPU), else the indexed forward followed by the indexed backward."""
    grad_x = _alloc.empty(x.shape, grad_out)
    if not grad_x.numel():
        return grad_x
    if not grad_out.numel():
        return grad_x.zero_()
    p = _params(kernel, stride, padding, dilation)
    x, grad_out = x.contiguous(), grad_out.contiguous()
    fused = backends.optional("pool", x, "max_pool2d_backward_from_input")
    if fused is not None:
        fused(grad_out, x, grad_x, p)
        return grad_x
    k = _kernels(x)
    indices = torch.empty(grad_out.shape, dtype=torch.int64, device=x.device)
    k.max_pool2d_forward(x, torch.empty_like(grad_out), indices, p)
    k.max_pool2d_backward(grad_out, indices, grad_x)
    return grad_x


def _avg_forward(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    out = _alloc.empty(_planes_out(x.shape, _out_hw(x.shape, kernel, stride, padding, (1, 1), ceil_mode)), x)
    if out.numel():
        _kernels(x).avg_pool2d_forward(x.contiguous(), out, _params(kernel, stride, padding), count_include_pad,
                                       divisor_override)
    return out


def _avg_backward(grad_out, input_size, kernel, stride, padding, count_include_pad, divisor_override):
    grad_x = _alloc.empty(input_size, grad_out)
    if grad_x.numel():
        _kernels(grad_out).avg_pool2d_backward(grad_out.contiguous(), grad_x, _params(kernel, stride, padding),
                                               count_include_pad, divisor_override)
    return grad_x


def _adaptive_avg_forward(x, output_size):
    out = _alloc.empty(_planes_out(x.shape, output_size), x)
    if out.numel():
        _kernels(x).adaptive_avg_pool2d_forward(x.contiguous(), out)
    return out


def _adaptive_avg_backward(grad_out, input_size):
    grad_x = _alloc.empty(input_size, grad_out)
    if grad_x.numel():
        _kernels(grad_out).adaptive_avg_pool2d_backward(grad_out.contiguous(), grad_x)
    return grad_x


def _adaptive_max_forward(x, output_size):
    shape = _planes_out(x.shape, output_size)
    out = _alloc.empty(shape, x)
    indices = torch.empty(shape, dtype=torch.int64, device=x.device)
    if out.numel():
        _kernels(x).adaptive_max_pool2d_forward(x.contiguous(), out, indices)
    return out, indices


# --- custom ops ---------------------------------------------------------------------------------------

@torch.library.custom_op("medkern::max_pool2d", mutates_args=())
def max_pool2d_op(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int],
                  dilation: list[int], ceil_mode: bool) -> Tensor:
    """Values only: the inference form, without the cost of writing indices."""
    return _max_values(input, kernel_size, stride, padding, dilation, ceil_mode)


@torch.library.custom_op("medkern::max_pool2d_with_indices", mutates_args=())
def max_pool2d_with_indices_op(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int],
                               dilation: list[int], ceil_mode: bool) -> tuple[Tensor, Tensor]:
    return _max_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode)


@torch.library.custom_op("medkern::max_pool2d_backward", mutates_args=())
def max_pool2d_backward_op(grad_output: Tensor, indices: Tensor, input_size: list[int]) -> Tensor:
    """Scatter-add by indices; serves max and adaptive max pooling."""
    return _max_backward(grad_output, indices, input_size)


@torch.library.custom_op("medkern::max_pool2d_backward_from_input", mutates_args=())
def max_pool2d_backward_from_input_op(grad_output: Tensor, input: Tensor, kernel_size: list[int], stride: list[int],
                                      padding: list[int], dilation: list[int], ceil_mode: bool) -> Tensor:
    """Gradient of the values-only max pooling: the winners are found again from the input."""
    return _max_backward_from_input(grad_output, input, kernel_size, stride, padding, dilation)


@torch.library.custom_op("medkern::avg_pool2d", mutates_args=())
def avg_pool2d_op(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool,
                  count_include_pad: bool, divisor_override: Optional[int]) -> Tensor:
    return _avg_forward(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


@torch.library.custom_op("medkern::avg_pool2d_backward", mutates_args=())
def avg_pool2d_backward_op(grad_output: Tensor, input_size: list[int], kernel_size: list[int], stride: list[int],
                           padding: list[int], ceil_mode: bool, count_include_pad: bool,
                           divisor_override: Optional[int]) -> Tensor:
    return _avg_backward(grad_output, input_size, kernel_size, stride, padding, count_include_pad, divisor_override)


@torch.library.custom_op("medkern::adaptive_avg_pool2d", mutates_args=())
def adaptive_avg_pool2d_op(input: Tensor, output_size: list[int]) -> Tensor:
    return _adaptive_avg_forward(input, output_size)


@torch.library.custom_op("medkern::adaptive_avg_pool2d_backward", mutates_args=())
def adaptive_avg_pool2d_backward_op(grad_output: Tensor, input_size: list[int]) -> Tensor:
    return _adaptive_avg_backward(grad_output, input_size)


@torch.library.custom_op("medkern::adaptive_max_pool2d", mutates_args=())
def adaptive_max_pool2d_op(input: Tensor, output_size: list[int]) -> tuple[Tensor, Tensor]:
    return _adaptive_max_forward(input, output_size)


@max_pool2d_op.register_fake
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    return input.new_empty(_planes_out(input.shape, _out_hw(input.shape, kernel_size, stride, padding, dilation,
                                                            ceil_mode)))


@max_pool2d_with_indices_op.register_fake
def _(input, kernel_size, stride, padding, dilation, ceil_mode):
    shape = _planes_out(input.shape, _out_hw(input.shape, kernel_size, stride, padding, dilation, ceil_mode))
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


@max_pool2d_backward_op.register_fake
def _(grad_output, indices, input_size):
    return grad_output.new_empty(input_size)


@max_pool2d_backward_from_input_op.register_fake
def _(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode):
    return grad_output.new_empty(input.shape)


@avg_pool2d_op.register_fake
def _(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return input.new_empty(_planes_out(input.shape, _out_hw(input.shape, kernel_size, stride, padding, (1, 1),
                                                            ceil_mode)))


@avg_pool2d_backward_op.register_fake
def _(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return grad_output.new_empty(input_size)


@adaptive_avg_pool2d_op.register_fake
def _(input, output_size):
    return input.new_empty(_planes_out(input.shape, output_size))


@adaptive_avg_pool2d_backward_op.register_fake
def _(grad_output, input_size):
    return grad_output.new_empty(input_size)


@adaptive_max_pool2d_op.register_fake
def _(input, output_size):
    shape = _planes_out(input.shape, output_size)
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


# --- autograd -------------------------------------------------------------------------------------------

def _gather_by_indices(gg, indices):
    """The adjoint of scattering by indices: out[plane, i] = gg[plane, indices[plane, i]]."""
    return gg.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)


def _indices_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _max_grad(ctx, grad_out, _grad_indices):
    (indices,) = ctx.saved_tensors
    return (max_pool2d_backward_op(grad_out, indices, ctx.input_shape),) + (None,) * 5


def _adaptive_max_grad(ctx, grad_out, _grad_indices):
    (indices,) = ctx.saved_tensors
    return max_pool2d_backward_op(grad_out, indices, ctx.input_shape), None


def _values_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.geometry = inputs[1:]


def _values_grad(ctx, grad_out):
    (x,) = ctx.saved_tensors
    return (max_pool2d_backward_from_input_op(grad_out, x, *ctx.geometry),) + (None,) * 5


def _from_input_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.geometry = inputs[2:]


def _from_input_grad(ctx, gg):
    """Linear in grad_output: its adjoint gathers gg at the winners. The input only selects winners
    (piecewise constant), so it gets no gradient, as with torch's max-pool backward."""
    (x,) = ctx.saved_tensors
    _, indices = max_pool2d_with_indices_op(x.detach(), *ctx.geometry)
    return (_gather_by_indices(gg, indices),) + (None,) * 6


def _max_backward_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _max_backward_grad(ctx, gg):
    (indices,) = ctx.saved_tensors
    return _gather_by_indices(gg, indices), None, None


def _avg_setup(ctx, inputs, output):
    x, *geometry = inputs
    ctx.input_shape = list(x.shape)
    ctx.geometry = geometry


def _avg_grad(ctx, grad_out):
    return (avg_pool2d_backward_op(grad_out, ctx.input_shape, *ctx.geometry),) + (None,) * 6


def _avg_backward_setup(ctx, inputs, output):
    ctx.geometry = inputs[2:]


def _avg_backward_grad(ctx, gg):
    return (avg_pool2d_op(gg, *ctx.geometry),) + (None,) * 7


def _adaptive_avg_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)


def _adaptive_avg_grad(ctx, grad_out):
    return adaptive_avg_pool2d_backward_op(grad_out, ctx.input_shape), None


def _adaptive_avg_backward_setup(ctx, inputs, output):
    ctx.output_size = list(inputs[0].shape[2:])


def _adaptive_avg_backward_grad(ctx, gg):
    return adaptive_avg_pool2d_op(gg, ctx.output_size), None


torch.library.register_autograd("medkern::max_pool2d", _values_grad, setup_context=_values_setup)
torch.library.register_autograd("medkern::max_pool2d_backward_from_input", _from_input_grad,
                                setup_context=_from_input_setup)
torch.library.register_autograd("medkern::max_pool2d_with_indices", _max_grad, setup_context=_indices_setup)
torch.library.register_autograd("medkern::adaptive_max_pool2d", _adaptive_max_grad, setup_context=_indices_setup)
torch.library.register_autograd("medkern::max_pool2d_backward", _max_backward_grad,
                                setup_context=_max_backward_setup)
torch.library.register_autograd("medkern::avg_pool2d", _avg_grad, setup_context=_avg_setup)
torch.library.register_autograd("medkern::avg_pool2d_backward", _avg_backward_grad,
                                setup_context=_avg_backward_setup)
torch.library.register_autograd("medkern::adaptive_avg_pool2d", _adaptive_avg_grad,
                                setup_context=_adaptive_avg_setup)
torch.library.register_autograd("medkern::adaptive_avg_pool2d_backward", _adaptive_avg_backward_grad,
                                setup_context=_adaptive_avg_backward_setup)


# --- validation -----------------------------------------------------------------------------------------

def _window(kernel_size, stride, padding, dilation, n: int):
    kernel = v.int_tuple(kernel_size, "kernel_size", n, minimum=1) if not _is_1tuple(kernel_size) \
        else v.int_tuple(kernel_size[0], "kernel_size", n, minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel
    elif _is_1tuple(stride):
        stride = v.int_tuple(stride[0], "stride", n, minimum=1)
    else:
        stride = v.int_tuple(stride, "stride", n, minimum=1)
    padding = v.int_tuple(padding[0] if _is_1tuple(padding) else padding, "padding", n, minimum=0)
    dilation = v.int_tuple(dilation[0] if _is_1tuple(dilation) else dilation, "dilation", n, minimum=1)
    return kernel, stride, padding, dilation


def _is_1tuple(x) -> bool:
    return isinstance(x, (tuple, list)) and len(x) == 1


def _check_input(input, name_rank_batched: int):
    """Validates the input of a pooling op of `name_rank_batched` dims (3 for 1-D, 4 for 2-D), returns
    (4-D view, how to restore the caller's rank)."""
    v.tensor(input, "input", (name_rank_batched - 1, name_rank_batched))
    x = input
    unbatched = x.dim() == name_rank_batched - 1
    if unbatched:
        x = x.unsqueeze(0)
    if name_rank_batched == 3:
        x = x.unsqueeze(2)
    if any(n == 0 for n in x.shape[1:]):
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(input.shape)}")

    def restore(t):
        if name_rank_batched == 3:
            t = t.squeeze(2)
        return t.squeeze(0) if unbatched else t
    return x, restore


def _check_window_fits(x, kernel, stride, padding, dilation, ceil_mode, half_kernel):
    for k, p, d in zip(kernel, padding, dilation):
        limit = ((k - 1) * d + 1) // 2 if half_kernel == "effective" else k // 2
        if p > limit:
            raise ValueError(f"padding: should be at most half of the effective kernel size, got padding={p} for "
                             f"kernel_size={k} and dilation={d}")
    out = _out_hw(x.shape, kernel, stride, padding, dilation, ceil_mode)
    if min(out) < 1:
        raise ValueError(f"input: spatial size {tuple(x.shape[2:])} is too small for kernel_size {kernel}, "
                         f"dilation {dilation} and padding {padding} (output size {out})")


def _adaptive_size(output_size, x, n: int) -> list[int]:
    if output_size is None or isinstance(output_size, (str, bytes)):
        raise TypeError(f"output_size: expected an int or a sequence of {n} ints, got {output_size!r}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != n:
            raise ValueError(f"output_size: expected {n} values, got {len(output_size)}")
        sizes = [x.shape[2 + (2 - n) + i] if s is None else v.integer(s, "output_size", minimum=1)
                 for i, s in enumerate(output_size)]
    else:
        sizes = [v.integer(output_size, "output_size", minimum=1)] * n
    return sizes if n == 2 else [1, sizes[0]]


# --- public ops -----------------------------------------------------------------------------------------

def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, n):
    x, restore = _check_input(input, n + 2)
    kernel, stride, padding, dilation = _window(kernel_size, stride, padding, dilation, n)
    if n == 1:
        kernel, stride, padding, dilation = (1, *kernel), (1, *stride), (0, *padding), (1, *dilation)
    _check_window_fits(x, kernel, stride, padding, dilation, ceil_mode, "effective")
    geometry = (list(kernel), list(stride), list(padding), list(dilation), bool(ceil_mode))
    # Pooling has no eager autograd twins: a call that needs gradients takes the custom op.
    if return_indices:
        op = max_pool2d_with_indices_op
        out, indices = route(_max_with_indices, op, op, x)(x, *geometry)
        return restore(out), restore(indices)
    # Training without return_indices uses the values-only op: its backward finds the winners again from
    # the input, which moves fewer bytes than writing and reading int64 indices.
    return restore(route(_max_values, max_pool2d_op, max_pool2d_op, x)(x, *geometry))


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool2d``: (N, C, H, W) or (C, H, W); indices identical to torch's."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool1d``: (N, C, L) or (C, L)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, n):
    x, restore = _check_input(input, n + 2)
    kernel, stride, padding, _ = _window(kernel_size, stride, padding, 1, n)
    if n == 1:
        kernel, stride, padding = (1, *kernel), (1, *stride), (0, *padding)
    _check_window_fits(x, kernel, stride, padding, (1, 1), ceil_mode, "plain")
    if divisor_override is not None:
        divisor_override = v.integer(divisor_override, "divisor_override")
        if divisor_override == 0:
            raise ValueError("divisor_override: must not be zero")
    geometry = (list(kernel), list(stride), list(padding), bool(ceil_mode), bool(count_include_pad), divisor_override)
    return restore(route(_avg_forward, avg_pool2d_op, avg_pool2d_op, x)(x, *geometry))


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """``torch.nn.functional.avg_pool2d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """``torch.nn.functional.avg_pool1d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1)


def _adaptive_avg(input, output_size, n):
    x, restore = _check_input(input, n + 2)
    size = _adaptive_size(output_size, x, n)
    return restore(route(_adaptive_avg_forward, adaptive_avg_pool2d_op, adaptive_avg_pool2d_op, x)(x, size))


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool2d``; output_size 1 is global average pooling."""
    return _adaptive_avg(input, output_size, 2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool1d``."""
    return _adaptive_avg(input, output_size, 1)


def _adaptive_max(input, output_size, return_indices, n):
    x, restore = _check_input(input, n + 2)
    size = _adaptive_size(output_size, x, n)
    out, indices = route(_adaptive_max_forward, adaptive_max_pool2d_op, adaptive_max_pool2d_op, x)(x, size)
    return (restore(out), restore(indices)) if return_indices else restore(out)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool2d``."""
    return _adaptive_max(input, output_size, return_indices, 2)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool1d``."""
    return _adaptive_max(input, output_size, return_indices, 1)

"""Pooling ops: max, average and adaptive pooling in 1-D, 2-D and 3-D, with torch's signatures and semantics
(ceil_mode, count_include_pad, divisor_override, dilation, return_indices with torch's indices, NaN
propagation). 1-D pooling runs on the 2-D kernels with H = 1; unbatched inputs gain a batch of one.

The implementations below take planes (N, C, H, W) and volumes (N, C, D, H, W) alike, calling the backend
entry of the tensors' rank. Each is a ``torch.library`` custom op per rank (``medkern::max_pool2d``,
``medkern::max_pool3d``, ...) with a fake kernel and autograd; every backward is a custom op with autograd
of its own (both are linear in the incoming gradient: the adjoint of scattering by indices is gathering by
them, the adjoint of average pooling's backward is average pooling), so double backward works wherever
torch has it.
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Optional

import torch
from torch import Tensor

from .. import backends
from .._geometry import PoolParams, pool_out_size
from . import _alloc, _validate as v
from ._dispatch import route

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool3d"]


def _entry(t: Tensor, name: str):
    """The current backend's pooling entry `name` ("max_pool{}d_forward", ...) of t's rank: 2 for planes
    (N, C, H, W), 3 for volumes (N, C, D, H, W). Where the backend lacks it, BackendUnavailableError."""
    return backends.entry("pool", t, name.format(t.dim() - 2))


def _params(kernel, stride, padding, dilation=None) -> PoolParams:
    return PoolParams(tuple(kernel), tuple(stride), tuple(padding),
                      tuple(dilation) if dilation is not None else (1,) * len(kernel))


def _out_size(shape, kernel, stride, padding, dilation, ceil_mode):
    return tuple(pool_out_size(n, k, s, p, d, ceil_mode)
                 for n, k, s, p, d in zip(shape[len(shape) - len(kernel):], kernel, stride, padding, dilation))


def _pooled_shape(x_shape, out_size):
    return (*x_shape[:2], *out_size)


def _as_planes(t: Tensor) -> Tensor:
    """Volumes (N, C, D, H, W) as planes (N, C, 1, D*H*W): the max backward of a volume is the 2-d one on
    these views, whose flat indices are the volume's (CONTRACT.md)."""
    return t.view(t.shape[0], t.shape[1], 1, math.prod(t.shape[2:])) if t.dim() == 5 else t


def _scatter_by_indices(grad_out, indices, grad_x):
    scatter = backends.entry("pool", grad_x, "max_pool2d_backward")
    scatter(_as_planes(grad_out), _as_planes(indices), _as_planes(grad_x))


# --- implementations shared by the fast path and the custom ops (each with its op's signature) ----------

def _max_forward(x, kernel, stride, padding, dilation, ceil_mode, with_indices):
    shape = _pooled_shape(x.shape, _out_size(x.shape, kernel, stride, padding, dilation, ceil_mode))
    out = _alloc.empty(shape, x)
    indices = _alloc.empty(shape, x, torch.int64) if with_indices else None
    if out.numel():
        _entry(x, "max_pool{}d_forward")(x.contiguous(), out, indices, _params(kernel, stride, padding, dilation))
    return out, indices


def _max_values(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int], dilation: list[int],
                ceil_mode: bool) -> Tensor:
    """Values only: the inference form, without the cost of writing indices."""
    return _max_forward(input, kernel_size, stride, padding, dilation, ceil_mode, False)[0]


def _max_with_indices(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int],
                      dilation: list[int], ceil_mode: bool) -> tuple[Tensor, Tensor]:
    return _max_forward(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _max_backward(grad_output: Tensor, indices: Tensor, input_size: list[int]) -> Tensor:
    """Scatter-add by indices; serves max and adaptive max pooling."""
    grad_x = _alloc.empty(input_size, grad_output)
    if grad_x.numel():
        if grad_output.numel():
            _scatter_by_indices(grad_output.contiguous(), indices.contiguous(), grad_x)
        else:
            grad_x.zero_()
    return grad_x


def _max_backward_from_input(grad_output: Tensor, input: Tensor, kernel_size: list[int], stride: list[int],
                             padding: list[int], dilation: list[int], ceil_mode: bool) -> Tensor:
    """Gradient of the values-only max pooling, the winners found again from the input: the backend's
    optional fused entry where it declares one (native CPU, planes), else the indexed forward followed by
    the indexed backward. (ceil_mode is folded into grad_output's shape.)"""
    grad_x = _alloc.empty(input.shape, grad_output)
    if not grad_x.numel():
        return grad_x
    if not grad_output.numel():
        return grad_x.zero_()
    p = _params(kernel_size, stride, padding, dilation)
    x, grad_output = input.contiguous(), grad_output.contiguous()
    fused = backends.optional("pool", x, "max_pool{}d_backward_from_input".format(x.dim() - 2))
    if fused is not None:
        fused(grad_output, x, grad_x, p)
        return grad_x
    indices = torch.empty(grad_output.shape, dtype=torch.int64, device=x.device)
    _entry(x, "max_pool{}d_forward")(x, torch.empty_like(grad_output), indices, p)
    _scatter_by_indices(grad_output, indices, grad_x)
    return grad_x


def _avg_forward(input: Tensor, kernel_size: list[int], stride: list[int], padding: list[int], ceil_mode: bool,
                 count_include_pad: bool, divisor_override: Optional[int]) -> Tensor:
    ones = (1,) * len(kernel_size)
    out = _alloc.empty(_pooled_shape(input.shape, _out_size(input.shape, kernel_size, stride, padding, ones,
                                                            ceil_mode)), input)
    if out.numel():
        _entry(input, "avg_pool{}d_forward")(input.contiguous(), out, _params(kernel_size, stride, padding),
                                             count_include_pad, divisor_override)
    return out


def _avg_backward(grad_output: Tensor, input_size: list[int], kernel_size: list[int], stride: list[int],
                  padding: list[int], ceil_mode: bool, count_include_pad: bool,
                  divisor_override: Optional[int]) -> Tensor:
    """(ceil_mode is folded into grad_output's shape.)"""
    grad_x = _alloc.empty(input_size, grad_output)
    if grad_x.numel():
        _entry(grad_x, "avg_pool{}d_backward")(grad_output.contiguous(), grad_x, _params(kernel_size, stride, padding),
                                               count_include_pad, divisor_override)
    return grad_x


def _adaptive_avg_forward(input: Tensor, output_size: list[int]) -> Tensor:
    out = _alloc.empty(_pooled_shape(input.shape, output_size), input)
    if out.numel():
        _entry(input, "adaptive_avg_pool{}d_forward")(input.contiguous(), out)
    return out


def _adaptive_avg_backward(grad_output: Tensor, input_size: list[int]) -> Tensor:
    grad_x = _alloc.empty(input_size, grad_output)
    if grad_x.numel():
        _entry(grad_x, "adaptive_avg_pool{}d_backward")(grad_output.contiguous(), grad_x)
    return grad_x


def _adaptive_max_forward(input: Tensor, output_size: list[int]) -> tuple[Tensor, Tensor]:
    shape = _pooled_shape(input.shape, output_size)
    out = _alloc.empty(shape, input)
    indices = torch.empty(shape, dtype=torch.int64, device=input.device)
    if out.numel():
        _entry(input, "adaptive_max_pool{}d_forward")(input.contiguous(), out, indices)
    return out, indices


# --- fake kernels (shapes only) ---------------------------------------------------------------------------

def _fake_max_values(input, kernel_size, stride, padding, dilation, ceil_mode):
    return input.new_empty(_pooled_shape(input.shape, _out_size(input.shape, kernel_size, stride, padding, dilation,
                                                                ceil_mode)))


def _fake_max_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode):
    out = _fake_max_values(input, kernel_size, stride, padding, dilation, ceil_mode)
    return out, torch.empty_like(out, dtype=torch.int64)


def _fake_max_backward(grad_output, indices, input_size):
    return grad_output.new_empty(input_size)


def _fake_max_backward_from_input(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode):
    return grad_output.new_empty(input.shape)


def _fake_avg(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return _fake_max_values(input, kernel_size, stride, padding, (1,) * len(kernel_size), ceil_mode)


def _fake_avg_backward(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override):
    return grad_output.new_empty(input_size)


def _fake_adaptive_avg(input, output_size):
    return input.new_empty(_pooled_shape(input.shape, output_size))


def _fake_adaptive_avg_backward(grad_output, input_size):
    return grad_output.new_empty(input_size)


def _fake_adaptive_max(input, output_size):
    out = _fake_adaptive_avg(input, output_size)
    return out, torch.empty_like(out, dtype=torch.int64)


# --- autograd (rank-generic: each backward takes the custom ops of its tensors' rank) --------------------

def _ops_for(dim: int) -> SimpleNamespace:
    """The custom ops serving batched tensors of `dim` dimensions (4: planes, 5: volumes)."""
    return _OPS[dim]


def _gather_by_indices(gg, indices):
    """The adjoint of scattering by indices: out[plane, i] = gg[plane, indices[plane, i]]."""
    return gg.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)


def _indices_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _max_grad(ctx, grad_out, _grad_indices):
    (indices,) = ctx.saved_tensors
    return (_ops_for(indices.dim()).max_backward(grad_out, indices, ctx.input_shape),) + (None,) * 5


def _adaptive_max_grad(ctx, grad_out, _grad_indices):
    (indices,) = ctx.saved_tensors
    return _ops_for(indices.dim()).max_backward(grad_out, indices, ctx.input_shape), None


def _values_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.geometry = inputs[1:]


def _values_grad(ctx, grad_out):
    (x,) = ctx.saved_tensors
    return (_ops_for(x.dim()).max_backward_from_input(grad_out, x, *ctx.geometry),) + (None,) * 5


def _from_input_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.geometry = inputs[2:]


def _from_input_grad(ctx, gg):
    """Linear in grad_output: its adjoint gathers gg at the winners. The input only selects winners
    (piecewise constant), so it gets no gradient, as with torch's max-pool backward."""
    (x,) = ctx.saved_tensors
    _, indices = _ops_for(x.dim()).max_with_indices(x.detach(), *ctx.geometry)
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
    return (_ops_for(grad_out.dim()).avg_backward(grad_out, ctx.input_shape, *ctx.geometry),) + (None,) * 6


def _avg_backward_setup(ctx, inputs, output):
    ctx.geometry = inputs[2:]


def _avg_backward_grad(ctx, gg):
    return (_ops_for(gg.dim()).avg(gg, *ctx.geometry),) + (None,) * 7


def _adaptive_avg_setup(ctx, inputs, output):
    ctx.input_shape = list(inputs[0].shape)


def _adaptive_avg_grad(ctx, grad_out):
    return _ops_for(grad_out.dim()).adaptive_avg_backward(grad_out, ctx.input_shape), None


def _adaptive_avg_backward_setup(ctx, inputs, output):
    ctx.output_size = list(inputs[0].shape[2:])


def _adaptive_avg_backward_grad(ctx, gg):
    return _ops_for(gg.dim()).adaptive_avg(gg, ctx.output_size), None


# --- custom ops, one set per rank -------------------------------------------------------------------------

# field -> (op name with {} for the rank, implementation, fake kernel, backward, setup_context)
_OP_TABLE = {
    "max_values": ("max_pool{}d", _max_values, _fake_max_values, _values_grad, _values_setup),
    "max_with_indices": ("max_pool{}d_with_indices", _max_with_indices, _fake_max_with_indices, _max_grad,
                         _indices_setup),
    "max_backward": ("max_pool{}d_backward", _max_backward, _fake_max_backward, _max_backward_grad,
                     _max_backward_setup),
    "max_backward_from_input": ("max_pool{}d_backward_from_input", _max_backward_from_input,
                                _fake_max_backward_from_input, _from_input_grad, _from_input_setup),
    "avg": ("avg_pool{}d", _avg_forward, _fake_avg, _avg_grad, _avg_setup),
    "avg_backward": ("avg_pool{}d_backward", _avg_backward, _fake_avg_backward, _avg_backward_grad,
                     _avg_backward_setup),
    "adaptive_avg": ("adaptive_avg_pool{}d", _adaptive_avg_forward, _fake_adaptive_avg, _adaptive_avg_grad,
                     _adaptive_avg_setup),
    "adaptive_avg_backward": ("adaptive_avg_pool{}d_backward", _adaptive_avg_backward, _fake_adaptive_avg_backward,
                              _adaptive_avg_backward_grad, _adaptive_avg_backward_setup),
    "adaptive_max": ("adaptive_max_pool{}d", _adaptive_max_forward, _fake_adaptive_max, _adaptive_max_grad,
                     _indices_setup),
}


def _define_ops(rank: int) -> SimpleNamespace:
    """The custom ops ``medkern::*_pool{rank}d*``: the schemas come from the implementations' annotations."""
    ops = {}
    for field, (name, impl, fake, backward, setup) in _OP_TABLE.items():
        op = torch.library.custom_op(f"medkern::{name.format(rank)}", impl, mutates_args=())
        op.register_fake(fake)
        op.register_autograd(backward, setup_context=setup)
        ops[field] = op
    return SimpleNamespace(**ops)


_OPS = {4: _define_ops(2), 5: _define_ops(3)}  # by the dimension of the batched tensors they take


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


def _check_input(input, n: int):
    """Validates the input of n-d pooling; returns (the batched view the implementations take: 4-D for 1-D
    and 2-D pooling, 5-D for 3-D, and how to restore the caller's rank)."""
    v.tensor(input, "input", (n + 1, n + 2))
    x = input
    unbatched = x.dim() == n + 1
    if unbatched:
        x = x.unsqueeze(0)
    if n == 1:
        x = x.unsqueeze(2)
    if any(s == 0 for s in x.shape[1:]):
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(input.shape)}")

    def restore(t):
        if n == 1:
            t = t.squeeze(2)
        return t.squeeze(0) if unbatched else t
    return x, restore


def _check_window_fits(x, kernel, stride, padding, dilation, ceil_mode):
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise ValueError(f"padding: should be at most half of kernel_size, got padding={p} for kernel_size={k}")
    out = _out_size(x.shape, kernel, stride, padding, dilation, ceil_mode)
    if min(out) < 1:
        raise ValueError(f"input: spatial size {tuple(x.shape[2:])} is too small for kernel_size {kernel}, "
                         f"dilation {dilation} and padding {padding} (output size {out})")


def _lift_1d(kernel, stride, padding, dilation, n):
    """1-D pooling runs as 2-D with one row: a one-tap, unpadded height axis."""
    if n != 1:
        return kernel, stride, padding, dilation
    return (1, *kernel), (1, *stride), (0, *padding), (1, *dilation)


def _adaptive_size(output_size, x, n: int) -> list[int]:
    if output_size is None or isinstance(output_size, (str, bytes)):
        raise TypeError(f"output_size: expected an int or a sequence of {n} ints, got {output_size!r}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != n:
            raise ValueError(f"output_size: expected {n} values, got {len(output_size)}")
        # None keeps that axis's input size (torch's convention)
        sizes = [x.shape[x.dim() - n + i] if s is None else v.integer(s, "output_size", minimum=1)
                 for i, s in enumerate(output_size)]
    else:
        sizes = [v.integer(output_size, "output_size", minimum=1)] * n
    return sizes if n > 1 else [1, sizes[0]]


# --- public ops -----------------------------------------------------------------------------------------

def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, n):
    x, restore = _check_input(input, n)
    kernel, stride, padding, dilation = _lift_1d(*_window(kernel_size, stride, padding, dilation, n), n)
    _check_window_fits(x, kernel, stride, padding, dilation, ceil_mode)
    geometry = (list(kernel), list(stride), list(padding), list(dilation), bool(ceil_mode))
    ops = _ops_for(x.dim())
    # Pooling has no eager autograd twins: a call that needs gradients takes the custom op.
    if return_indices:
        out, indices = route(_max_with_indices, ops.max_with_indices, ops.max_with_indices, x)(x, *geometry)
        return restore(out), restore(indices)
    # Training without return_indices uses the values-only op: its backward finds the winners again from
    # the input, which moves fewer bytes than writing and reading int64 indices.
    return restore(route(_max_values, ops.max_values, ops.max_values, x)(x, *geometry))


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool3d``: (N, C, D, H, W) or (C, D, H, W); indices identical to torch's."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool2d``: (N, C, H, W) or (C, H, W); indices identical to torch's."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2)


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """``torch.nn.functional.max_pool1d``: (N, C, L) or (C, L)."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1)


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, n):
    x, restore = _check_input(input, n)
    kernel, stride, padding, ones = _lift_1d(*_window(kernel_size, stride, padding, 1, n), n)
    _check_window_fits(x, kernel, stride, padding, ones, ceil_mode)
    if n == 3 and any(size < k for size, k in zip(x.shape[2:], kernel)):  # torch's rule for volumes only
        raise ValueError(f"input: spatial size {tuple(x.shape[2:])} is smaller than kernel_size {kernel}")
    if divisor_override is not None:
        divisor_override = v.integer(divisor_override, "divisor_override")
        if divisor_override == 0:
            raise ValueError("divisor_override: must not be zero")
    geometry = (list(kernel), list(stride), list(padding), bool(ceil_mode), bool(count_include_pad), divisor_override)
    ops = _ops_for(x.dim())
    return restore(route(_avg_forward, ops.avg, ops.avg, x)(x, *geometry))


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """``torch.nn.functional.avg_pool3d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Tensor:
    """``torch.nn.functional.avg_pool2d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2)


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """``torch.nn.functional.avg_pool1d``."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1)


def _adaptive_avg(input, output_size, n):
    x, restore = _check_input(input, n)
    size = _adaptive_size(output_size, x, n)
    ops = _ops_for(x.dim())
    return restore(route(_adaptive_avg_forward, ops.adaptive_avg, ops.adaptive_avg, x)(x, size))


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool3d``; output_size 1 is global average pooling."""
    return _adaptive_avg(input, output_size, 3)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool2d``; output_size 1 is global average pooling."""
    return _adaptive_avg(input, output_size, 2)


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    """``torch.nn.functional.adaptive_avg_pool1d``."""
    return _adaptive_avg(input, output_size, 1)


def _adaptive_max(input, output_size, return_indices, n):
    x, restore = _check_input(input, n)
    size = _adaptive_size(output_size, x, n)
    ops = _ops_for(x.dim())
    out, indices = route(_adaptive_max_forward, ops.adaptive_max, ops.adaptive_max, x)(x, size)
    return (restore(out), restore(indices)) if return_indices else restore(out)


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool3d``."""
    return _adaptive_max(input, output_size, return_indices, 3)


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool2d``."""
    return _adaptive_max(input, output_size, return_indices, 2)


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False):
    """``torch.nn.functional.adaptive_max_pool1d``."""
    return _adaptive_max(input, output_size, return_indices, 1)

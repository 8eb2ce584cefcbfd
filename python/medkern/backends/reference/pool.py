"""Pooling family in plain torch (see backends/CONTRACT.md): torch's own kernels, called below autograd.
Each function serves planes and volumes alike, calling torch's function of the tensors' rank."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._geometry import pool_out_size

aten = torch.ops.aten


def _ceil_mode(p, in_size, out_size) -> bool:
    """The ceil_mode that gives out_size (the contract passes the output size, torch takes the flag)."""
    floor = [pool_out_size(n, k, s, pad, d, False) for n, k, s, pad, d in
             zip(in_size, p.kernel, p.stride, p.padding, p.dilation)]
    return list(floor) != list(out_size)


def _of_rank(name: str, t, namespace=F):
    """torch's ``name`` ("max_pool{}d", ...) for t's rank: 2-d for (N, C, H, W), 3-d for (N, C, D, H, W)."""
    return getattr(namespace, name.format(t.dim() - 2))


def max_pool2d_forward(x, out, indices, p):
    y, i = _of_rank("max_pool{}d", x)(x, p.kernel, p.stride, p.padding, p.dilation,
                                      ceil_mode=_ceil_mode(p, x.shape[2:], out.shape[2:]), return_indices=True)
    out.copy_(y)
    if indices is not None:
        indices.copy_(i)


def max_pool2d_backward(grad_out, indices, grad_x):
    planes = grad_x.shape[0] * grad_x.shape[1]
    grad_x.zero_().view(planes, -1).scatter_add_(1, indices.reshape(planes, -1), grad_out.reshape(planes, -1))


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    out.copy_(_of_rank("avg_pool{}d", x)(x, p.kernel, p.stride, p.padding, _ceil_mode(p, x.shape[2:], out.shape[2:]),
                                         count_include_pad, divisor_override))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    g = _of_rank("avg_pool{}d_backward", grad_x, aten)(
        grad_out, torch.zeros_like(grad_x), list(p.kernel), list(p.stride), list(p.padding),
        _ceil_mode(p, grad_x.shape[2:], grad_out.shape[2:]), count_include_pad, divisor_override)
    grad_x.copy_(g)


def adaptive_avg_pool2d_forward(x, out):
    out.copy_(_of_rank("adaptive_avg_pool{}d", x)(x, out.shape[2:]))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    grad_x.copy_(_of_rank("_adaptive_avg_pool{}d_backward", grad_x, aten)(grad_out, torch.zeros_like(grad_x)))


def adaptive_max_pool2d_forward(x, out, indices):
    y, i = _of_rank("adaptive_max_pool{}d", x)(x, out.shape[2:], return_indices=True)
    out.copy_(y)
    indices.copy_(i)


# The volume entries: the functions above, which take either rank.
max_pool3d_forward = max_pool2d_forward
avg_pool3d_forward = avg_pool2d_forward
avg_pool3d_backward = avg_pool2d_backward
adaptive_avg_pool3d_forward = adaptive_avg_pool2d_forward
adaptive_avg_pool3d_backward = adaptive_avg_pool2d_backward
adaptive_max_pool3d_forward = adaptive_max_pool2d_forward

"""Pooling family in plain torch (see backends/CONTRACT.md): torch's own kernels, called below autograd."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..._geometry import pool_out_size


def _ceil_mode(p, in_hw, out_hw) -> bool:
    """The ceil_mode that gives out_hw (the contract passes the output size, torch takes the flag)."""
    floor = [pool_out_size(n, k, s, pad, d, False) for n, k, s, pad, d in
             zip(in_hw, p.kernel, p.stride, p.padding, p.dilation)]
    return list(floor) != list(out_hw)


def max_pool2d_forward(x, out, indices, p):
    y, i = F.max_pool2d(x, p.kernel, p.stride, p.padding, p.dilation,
                        ceil_mode=_ceil_mode(p, x.shape[2:], out.shape[2:]), return_indices=True)
    out.copy_(y)
    if indices is not None:
        indices.copy_(i)


def max_pool2d_backward(grad_out, indices, grad_x):
    planes = grad_x.shape[0] * grad_x.shape[1]
    grad_x.zero_().view(planes, -1).scatter_add_(1, indices.reshape(planes, -1), grad_out.reshape(planes, -1))


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    out.copy_(F.avg_pool2d(x, p.kernel, p.stride, p.padding, _ceil_mode(p, x.shape[2:], out.shape[2:]),
                           count_include_pad, divisor_override))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    g = torch.ops.aten.avg_pool2d_backward(grad_out, torch.zeros_like(grad_x), list(p.kernel), list(p.stride),
                                           list(p.padding), _ceil_mode(p, grad_x.shape[2:], grad_out.shape[2:]),
                                           count_include_pad, divisor_override)
    grad_x.copy_(g)


def adaptive_avg_pool2d_forward(x, out):
    out.copy_(F.adaptive_avg_pool2d(x, out.shape[2:]))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    grad_x.copy_(torch.ops.aten._adaptive_avg_pool2d_backward(grad_out, torch.zeros_like(grad_x)))


def adaptive_max_pool2d_forward(x, out, indices):
    y, i = F.adaptive_max_pool2d(x, out.shape[2:], return_indices=True)
    out.copy_(y)
    indices.copy_(i)

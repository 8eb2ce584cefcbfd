"""conv2d and conv3d families in plain torch (see backends/CONTRACT.md). Slow and obviously right; one
function per map serves both ranks.

The asymmetric padding of the contract becomes an explicit pad (negative trailing padding crops), after
which torch's own convolution and its backward run with padding 0. No autograd graph is built: these
run inside custom ops, below the autograd layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pads(p, weight_shape, in_size, out_size):
    """F.pad amounts (last axis first: leading, trailing per axis) that make a padding-0 convolution produce
    out_size."""
    pads = []
    for s_, lead, dl, k, n, o in reversed(list(zip(p.stride, p.padding, p.dilation, weight_shape[2:], in_size,
                                                   out_size))):
        pads += [lead, (o - 1) * s_ + dl * (k - 1) + 1 - n - lead]
    return tuple(pads)


def _backward(grad_out, x_padded, weight, p, mask):
    zeros = [0] * len(p.stride)
    return torch.ops.aten.convolution_backward(grad_out, x_padded, weight, None, list(p.stride), zeros,
                                               list(p.dilation), False, zeros, p.groups, mask)


def _activate(y, p):
    if p.activation == 1:
        return F.relu(y)
    if p.activation == 2:
        return F.leaky_relu(y, p.negative_slope)
    return y


def conv2d_forward(x, weight, bias, out, p):
    pads = _pads(p, weight.shape, x.shape[2:], out.shape[2:])
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    out.copy_(_activate(conv(F.pad(x, pads), weight, bias, p.stride, 0, p.dilation, p.groups), p))


def conv2d_grad_input(grad_out, weight, grad_x, p):
    pads = _pads(p, weight.shape, grad_x.shape[2:], grad_out.shape[2:])
    x_padded = F.pad(torch.zeros_like(grad_x), pads)
    g, _, _ = _backward(grad_out, x_padded, weight, p, [True, False, False])
    grad_x.copy_(F.pad(g, tuple(-n for n in pads)))


def conv2d_grad_weight(grad_out, x, grad_w, p):
    pads = _pads(p, grad_w.shape, x.shape[2:], grad_out.shape[2:])
    _, g, _ = _backward(grad_out, F.pad(x, pads), grad_w, p, [False, True, False])
    grad_w.copy_(g)


def conv2d_grad_bias(grad_out, grad_b):
    grad_b.copy_(grad_out.sum((0, 2, 3)))


conv3d_forward, conv3d_grad_input, conv3d_grad_weight = conv2d_forward, conv2d_grad_input, conv2d_grad_weight

"""conv2d family in plain torch (see backends/CONTRACT.md). Slow and obviously right.

The asymmetric padding of the contract becomes an explicit pad (negative trailing padding crops), after
which torch's own convolution and its backward run with padding 0. No autograd graph is built: these
run inside custom ops, below the autograd layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _pads(p, weight_shape, in_hw, out_hw):
    """F.pad amounts (left, right, top, bottom) that make a padding-0 convolution produce out_hw."""
    (sh, sw), (ph, pw), (dh, dw) = p.stride, p.padding, p.dilation
    R, S = weight_shape[2:]
    trail_h = (out_hw[0] - 1) * sh + dh * (R - 1) + 1 - in_hw[0] - ph
    trail_w = (out_hw[1] - 1) * sw + dw * (S - 1) + 1 - in_hw[1] - pw
    return (pw, trail_w, ph, trail_h)


def _backward(grad_out, x_padded, weight, p, mask):
    return torch.ops.aten.convolution_backward(grad_out, x_padded, weight, None, list(p.stride), [0, 0],
                                               list(p.dilation), False, [0, 0], p.groups, mask)


def _activate(y, p):
    if p.activation == 1:
        return F.relu(y)
    if p.activation == 2:
        return F.leaky_relu(y, p.negative_slope)
    return y


def conv2d_forward(x, weight, bias, out, p):
    pads = _pads(p, weight.shape, x.shape[2:], out.shape[2:])
    out.copy_(_activate(F.conv2d(F.pad(x, pads), weight, bias, p.stride, 0, p.dilation, p.groups), p))


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

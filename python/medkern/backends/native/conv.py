"""conv2d family on medkern's compiled kernels (see backends/CONTRACT.md)."""
from __future__ import annotations

from ._interop import dl, module_and_stream


def conv2d_forward(x, weight, bias, out, p):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.conv2d_forward(dl(x), dl(weight), None if bias is None else dl(bias), dl(out),
                           *p.stride, *p.padding, *p.dilation, p.groups, stream, p.activation, p.negative_slope)


def conv2d_grad_input(grad_out, weight, grad_x, p):
    mod, stream, ctx = module_and_stream(grad_x)
    with ctx:
        mod.conv2d_grad_input(dl(grad_out), dl(weight), dl(grad_x), *p.stride, *p.padding, *p.dilation, p.groups,
                              stream)


def conv2d_grad_weight(grad_out, x, grad_w, p):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.conv2d_grad_weight(dl(grad_out), dl(x), dl(grad_w), *p.stride, *p.padding, *p.dilation, p.groups,
                               stream)


def conv2d_grad_bias(grad_out, grad_b):
    mod, stream, ctx = module_and_stream(grad_out)
    with ctx:
        mod.conv2d_grad_bias(dl(grad_out), dl(grad_b), stream)

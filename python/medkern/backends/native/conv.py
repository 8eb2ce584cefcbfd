"""conv2d and conv3d families on medkern's compiled kernels (see backends/CONTRACT.md). The bindings of the two
ranks differ only in how many geometry values they take per field (height, width; or depth, height, width),
which `*p.stride` etc. pass as the call has them."""
from __future__ import annotations

from ._interop import dl, module_and_stream


def _forward(binding: str):
    def forward(x, weight, bias, out, p):
        mod, stream, ctx = module_and_stream(x)
        with ctx:
            getattr(mod, binding)(dl(x), dl(weight), None if bias is None else dl(bias), dl(out), *p.stride,
                                  *p.padding, *p.dilation, p.groups, stream, p.activation, p.negative_slope)
    return forward


def _grad_map(binding: str):
    """grad_input (a, b, grad = grad_out, weight, grad_x) and grad_weight (grad_out, x, grad_w) alike."""
    def grad_map(a, b, grad, p):
        mod, stream, ctx = module_and_stream(grad if binding.endswith("input") else b)
        with ctx:
            getattr(mod, binding)(dl(a), dl(b), dl(grad), *p.stride, *p.padding, *p.dilation, p.groups, stream)
    return grad_map


conv2d_forward, conv3d_forward = _forward("conv2d_forward"), _forward("conv3d_forward")
conv2d_grad_input, conv3d_grad_input = _grad_map("conv2d_grad_input"), _grad_map("conv3d_grad_input")
conv2d_grad_weight, conv3d_grad_weight = _grad_map("conv2d_grad_weight"), _grad_map("conv3d_grad_weight")


def conv2d_grad_bias(grad_out, grad_b):
    mod, stream, ctx = module_and_stream(grad_out)
    with ctx:
        mod.conv2d_grad_bias(dl(grad_out), dl(grad_b), stream)

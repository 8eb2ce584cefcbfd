"""Pooling family on medkern's compiled kernels (see backends/CONTRACT.md)."""
from __future__ import annotations

from ..._native import require_cpu
from ._interop import dl, module_and_stream

# The optional entries of backends/CONTRACT.md this module has, by device type: the CPU module's only.
OPTIONAL = {"cpu": frozenset({"max_pool2d_backward_from_input"})}


def max_pool2d_forward(x, out, indices, p):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.max_pool2d_forward(dl(x), dl(out), None if indices is None else dl(indices), *p.kernel, *p.stride,
                               *p.padding, *p.dilation, stream)


def max_pool2d_backward(grad_out, indices, grad_x):
    mod, stream, ctx = module_and_stream(grad_x)
    with ctx:
        mod.max_pool2d_backward(dl(grad_out), dl(indices), dl(grad_x), stream)


def max_pool2d_backward_from_input(grad_out, x, grad_x, p):
    require_cpu().max_pool2d_backward_from_input(dl(grad_out), dl(x), dl(grad_x), *p.kernel, *p.stride, *p.padding,
                                                 *p.dilation, 0)


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.avg_pool2d_forward(dl(x), dl(out), *p.kernel, *p.stride, *p.padding, count_include_pad,
                               divisor_override or 0, stream)


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    mod, stream, ctx = module_and_stream(grad_x)
    with ctx:
        mod.avg_pool2d_backward(dl(grad_out), dl(grad_x), *p.kernel, *p.stride, *p.padding, count_include_pad,
                                divisor_override or 0, stream)


def adaptive_avg_pool2d_forward(x, out):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.adaptive_avg_pool2d_forward(dl(x), dl(out), stream)


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    mod, stream, ctx = module_and_stream(grad_x)
    with ctx:
        mod.adaptive_avg_pool2d_backward(dl(grad_out), dl(grad_x), stream)


def adaptive_max_pool2d_forward(x, out, indices):
    mod, stream, ctx = module_and_stream(x)
    with ctx:
        mod.adaptive_max_pool2d_forward(dl(x), dl(out), dl(indices), stream)


# Volumes: CPU kernels only (the CUDA module has no volume pooling yet).

def _cpu_volumes(x):
    if not x.is_cpu:
        from .. import BackendUnavailableError
        raise BackendUnavailableError("backend 'native' has no CUDA kernels for 3-d pooling yet; "
                                      "select medkern.backends.use('cupy') or 'numba' on GPUs")
    return require_cpu()


def max_pool3d_forward(x, out, indices, p):
    _cpu_volumes(x).max_pool3d_forward(dl(x), dl(out), None if indices is None else dl(indices), p.kernel, p.stride,
                                       p.padding, p.dilation)


def avg_pool3d_forward(x, out, p, count_include_pad, divisor_override):
    _cpu_volumes(x).avg_pool3d_forward(dl(x), dl(out), p.kernel, p.stride, p.padding, count_include_pad,
                                       divisor_override or 0)


def avg_pool3d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _cpu_volumes(grad_x).avg_pool3d_backward(dl(grad_out), dl(grad_x), p.kernel, p.stride, p.padding,
                                             count_include_pad, divisor_override or 0)


def adaptive_avg_pool3d_forward(x, out):
    _cpu_volumes(x).adaptive_avg_pool3d_forward(dl(x), dl(out))


def adaptive_avg_pool3d_backward(grad_out, grad_x):
    _cpu_volumes(grad_x).adaptive_avg_pool3d_backward(dl(grad_out), dl(grad_x))


def adaptive_max_pool3d_forward(x, out, indices):
    _cpu_volumes(x).adaptive_max_pool3d_forward(dl(x), dl(out), dl(indices))

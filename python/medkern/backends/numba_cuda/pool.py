"""Pooling family as ``numba.cuda`` kernels (see backends/CONTRACT.md).

Forwards run one thread per output element; the backward of average pooling gathers, one thread per
input element, from the outputs whose windows contain it (deterministic); the max backward scatters
with atomics (its float sums are therefore not bitwise reproducible where windows overlap). Each public
function wraps an array-level ``launch_*`` that also accepts numpy arrays, so the kernels run under
``NUMBA_ENABLE_CUDASIM=1`` on the CPU in tests."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._numba import pool_math

_THREADS = 128
_m = pool_math.compile_for(cuda.jit(device=True, inline=True))
_max_window, _avg_window, _avg_input_grad = _m.max_window, _m.avg_window, _m.avg_input_grad
_adaptive_avg_window, _adaptive_max_window = _m.adaptive_avg_window, _m.adaptive_max_window
_adaptive_avg_input_grad = _m.adaptive_avg_input_grad


@cuda.jit
def _max_forward(x, out, idx, with_indices, kh, kw, sh, sw, ph, pw, dh, dw):
    planes, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, oh, ow = t // (P * Q), (t // Q) % P, t % Q
        m, best = _max_window(x, p, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
        out[p, oh, ow] = m
        if with_indices:
            idx[p, oh, ow] = best


@cuda.jit
def _zero(a):
    planes, H, W = a.shape
    for t in range(cuda.grid(1), planes * H * W, cuda.gridsize(1)):
        a[t // (H * W), (t // W) % H, t % W] = 0


@cuda.jit
def _scatter_by_indices(dy, idx, dx, bad):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, oh, ow = t // (P * Q), (t // Q) % P, t % Q
        k = idx[p, oh, ow]
        if 0 <= k < H * W:
            cuda.atomic.add(dx, (p, k // W, k % W), dy[p, oh, ow])
        else:
            cuda.atomic.add(bad, 0, 1)


# Forward and backward of an average pooling share one kernel: each sets every element of dst (the output,
# or grad_x) from src (x, or grad_out) through that direction's per-element function.
@cuda.jit
def _avg(src, dst, backward, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, A, B = dst.shape
    for t in range(cuda.grid(1), planes * A * B, cuda.gridsize(1)):
        p, i, j = t // (A * B), (t // B) % A, t % B
        if backward:
            dst[p, i, j] = _avg_input_grad(src, p, i, j, A, B, kh, kw, sh, sw, ph, pw, include_pad, divisor)
        else:
            dst[p, i, j] = _avg_window(src, p, i, j, kh, kw, sh, sw, ph, pw, include_pad, divisor)


@cuda.jit
def _adaptive_avg(src, dst, backward):
    planes, A, B = dst.shape
    for t in range(cuda.grid(1), planes * A * B, cuda.gridsize(1)):
        p, i, j = t // (A * B), (t // B) % A, t % B
        dst[p, i, j] = (_adaptive_avg_input_grad(src, p, i, j, A, B) if backward else
                        _adaptive_avg_window(src, p, i, j, A, B))


@cuda.jit
def _adaptive_max_forward(x, out, idx):
    planes, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, oh, ow = t // (P * Q), (t // Q) % P, t % Q
        m, best = _adaptive_max_window(x, p, oh, ow, P, Q)
        out[p, oh, ow] = m
        idx[p, oh, ow] = best


def _grid(n: int) -> int:
    return max(1, min(math.ceil(n / _THREADS), 65535))


# --- array-level launchers: numba device arrays, or numpy arrays under the simulator ---------------------

def launch_max_pool2d_forward(x, out, indices, kernel, stride, padding, dilation, stream=0):
    with_indices = indices is not None
    idx = indices if with_indices else np.zeros((1, 1, 1), np.int64)
    _max_forward[_grid(out.size), _THREADS, stream](x, out, idx, with_indices, *kernel, *stride, *padding, *dilation)


def launch_max_pool2d_backward(grad_out, indices, grad_x, stream=0):
    """Returns how many indices were out of range (skipped)."""
    bad = cuda.to_device(np.zeros(1, np.int64), stream=stream)
    _zero[_grid(grad_x.size), _THREADS, stream](grad_x)
    _scatter_by_indices[_grid(grad_out.size), _THREADS, stream](grad_out, indices, grad_x, bad)
    return int(bad.copy_to_host(stream=stream)[0])


def launch_avg_pool2d_forward(x, out, kernel, stride, padding, count_include_pad, divisor_override, stream=0):
    _avg[_grid(out.size), _THREADS, stream](x, out, False, *kernel, *stride, *padding, count_include_pad,
                                            divisor_override or 0)


def launch_avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad, divisor_override,
                               stream=0):
    _avg[_grid(grad_x.size), _THREADS, stream](grad_out, grad_x, True, *kernel, *stride, *padding, count_include_pad,
                                               divisor_override or 0)


def launch_adaptive_avg_pool2d_forward(x, out, stream=0):
    _adaptive_avg[_grid(out.size), _THREADS, stream](x, out, False)


def launch_adaptive_avg_pool2d_backward(grad_out, grad_x, stream=0):
    _adaptive_avg[_grid(grad_x.size), _THREADS, stream](grad_out, grad_x, True)


def launch_adaptive_max_pool2d_forward(x, out, indices, stream=0):
    _adaptive_max_forward[_grid(out.size), _THREADS, stream](x, out, indices)


# --- torch-facing functions ---------------------------------------------------------------------------

def _planes(t):
    a = cuda.as_cuda_array(t.detach())
    return a.reshape(t.shape[0] * t.shape[1], t.shape[2], t.shape[3])


def _stream(t):
    import torch

    return cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def max_pool2d_forward(x, out, indices, p):
    launch_max_pool2d_forward(_planes(x), _planes(out), None if indices is None else _planes(indices), p.kernel,
                              p.stride, p.padding, p.dilation, _stream(x))


def max_pool2d_backward(grad_out, indices, grad_x):
    bad = launch_max_pool2d_backward(_planes(grad_out), _planes(indices), _planes(grad_x), _stream(grad_x))
    if bad:
        raise ValueError(f"indices: {bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    launch_avg_pool2d_forward(_planes(x), _planes(out), p.kernel, p.stride, p.padding, count_include_pad,
                              divisor_override, _stream(x))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    launch_avg_pool2d_backward(_planes(grad_out), _planes(grad_x), p.kernel, p.stride, p.padding, count_include_pad,
                               divisor_override, _stream(grad_x))


def adaptive_avg_pool2d_forward(x, out):
    launch_adaptive_avg_pool2d_forward(_planes(x), _planes(out), _stream(x))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    launch_adaptive_avg_pool2d_backward(_planes(grad_out), _planes(grad_x), _stream(grad_x))


def adaptive_max_pool2d_forward(x, out, indices):
    launch_adaptive_max_pool2d_forward(_planes(x), _planes(out), _planes(indices), _stream(x))

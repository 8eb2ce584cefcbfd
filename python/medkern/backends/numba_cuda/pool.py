"""Pooling family as ``numba.cuda`` kernels (see backends/CONTRACT.md).

Forwards run one thread per output element; the backward of average pooling gathers, one thread per
input element, from the outputs whose windows contain it (deterministic); the max backward scatters
with atomics (its float sums are therefore not bitwise reproducible where windows overlap). The kernels
are written for volumes; planes run as volumes of depth one, so each public function serves an entry of
either rank. Each wraps an array-level ``launch_*`` that also accepts numpy arrays, so the kernels run
under ``NUMBA_ENABLE_CUDASIM=1`` on the CPU in tests."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._numba import pool_math
from .._volumes import pool_window

_THREADS = 128
_m = pool_math.compile_for(cuda.jit(device=True, inline=True))
_max_window, _avg_window, _avg_input_grad = _m.max_window, _m.avg_window, _m.avg_input_grad
_adaptive_avg_window, _adaptive_max_window = _m.adaptive_avg_window, _m.adaptive_max_window
_adaptive_avg_input_grad = _m.adaptive_avg_input_grad


@cuda.jit
def _max_forward(x, out, idx, with_indices, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):
    volumes, O, P, Q = out.shape
    for t in range(cuda.grid(1), volumes * O * P * Q, cuda.gridsize(1)):
        v, od, oh, ow = t // (O * P * Q), (t // (P * Q)) % O, (t // Q) % P, t % Q
        m, best = _max_window(x, v, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw)
        out[v, od, oh, ow] = m
        if with_indices:
            idx[v, od, oh, ow] = best


@cuda.jit
def _zero(a):
    planes, n = a.shape
    for t in range(cuda.grid(1), planes * n, cuda.gridsize(1)):
        a[t // n, t % n] = 0


@cuda.jit
def _scatter_by_indices(dy, idx, dx, bad):
    """dx (planes, n_in), dy and idx (planes, n_out): dx[p, idx[p, i]] += dy[p, i]."""
    planes, n_in = dx.shape
    n_out = dy.shape[1]
    for t in range(cuda.grid(1), planes * n_out, cuda.gridsize(1)):
        p, i = t // n_out, t % n_out
        k = idx[p, i]
        if 0 <= k < n_in:
            cuda.atomic.add(dx, (p, k), dy[p, i])
        else:
            cuda.atomic.add(bad, 0, 1)


# Forward and backward of an average pooling share one kernel: each sets every element of dst (the output,
# or grad_x) from src (x, or grad_out) through that direction's per-element function.
@cuda.jit
def _avg(src, dst, backward, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor):
    volumes, A, B, C = dst.shape
    for t in range(cuda.grid(1), volumes * A * B * C, cuda.gridsize(1)):
        v, i, j, k = t // (A * B * C), (t // (B * C)) % A, (t // C) % B, t % C
        if backward:
            dst[v, i, j, k] = _avg_input_grad(src, v, i, j, k, A, B, C, kd, kh, kw, sd, sh, sw, pd, ph, pw,
                                              include_pad, divisor)
        else:
            dst[v, i, j, k] = _avg_window(src, v, i, j, k, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor)


@cuda.jit
def _adaptive_avg(src, dst, backward):
    volumes, A, B, C = dst.shape
    for t in range(cuda.grid(1), volumes * A * B * C, cuda.gridsize(1)):
        v, i, j, k = t // (A * B * C), (t // (B * C)) % A, (t // C) % B, t % C
        dst[v, i, j, k] = (_adaptive_avg_input_grad(src, v, i, j, k, A, B, C) if backward else
                           _adaptive_avg_window(src, v, i, j, k, A, B, C))


@cuda.jit
def _adaptive_max_forward(x, out, idx):
    volumes, O, P, Q = out.shape
    for t in range(cuda.grid(1), volumes * O * P * Q, cuda.gridsize(1)):
        v, od, oh, ow = t // (O * P * Q), (t // (P * Q)) % O, (t // Q) % P, t % Q
        m, best = _adaptive_max_window(x, v, od, oh, ow, O, P, Q)
        out[v, od, oh, ow] = m
        idx[v, od, oh, ow] = best


def _grid(n: int) -> int:
    return max(1, min(math.ceil(n / _THREADS), 65535))


# --- array-level launchers: numba device arrays, or numpy arrays under the simulator ---------------------
# Arrays are (planes, H, W) or (volumes, D, H, W), the per-axis tuples of two or three entries to match.

def _as_volumes(a):
    """(planes, H, W) as (planes, 1, H, W); (volumes, D, H, W) unchanged."""
    return a.reshape(a.shape[0], 1, *a.shape[1:]) if a.ndim == 3 else a


def _flat(a):
    """(planes, elements per plane)."""
    return a.reshape(a.shape[0], a.size // a.shape[0])


def launch_max_pool_forward(x, out, indices, kernel, stride, padding, dilation, stream=0):
    with_indices = indices is not None
    idx = _as_volumes(indices) if with_indices else np.zeros((1, 1, 1, 1), np.int64)
    _max_forward[_grid(out.size), _THREADS, stream](
        _as_volumes(x), _as_volumes(out), idx, with_indices, *pool_window(kernel, stride, padding, dilation))


def launch_max_pool_backward(grad_out, indices, grad_x, stream=0):
    """Returns how many indices were out of range (skipped)."""
    bad = cuda.to_device(np.zeros(1, np.int64), stream=stream)
    _zero[_grid(grad_x.size), _THREADS, stream](_flat(grad_x))
    _scatter_by_indices[_grid(grad_out.size), _THREADS, stream](_flat(grad_out), _flat(indices), _flat(grad_x), bad)
    return int(bad.copy_to_host(stream=stream)[0])


def launch_avg_pool_forward(x, out, kernel, stride, padding, count_include_pad, divisor_override, stream=0):
    _avg[_grid(out.size), _THREADS, stream](
        _as_volumes(x), _as_volumes(out), False, *pool_window(kernel, stride, padding), count_include_pad,
        divisor_override or 0)


def launch_avg_pool_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad, divisor_override,
                             stream=0):
    _avg[_grid(grad_x.size), _THREADS, stream](
        _as_volumes(grad_out), _as_volumes(grad_x), True, *pool_window(kernel, stride, padding),
        count_include_pad, divisor_override or 0)


def launch_adaptive_avg_pool_forward(x, out, stream=0):
    _adaptive_avg[_grid(out.size), _THREADS, stream](_as_volumes(x), _as_volumes(out), False)


def launch_adaptive_avg_pool_backward(grad_out, grad_x, stream=0):
    _adaptive_avg[_grid(grad_x.size), _THREADS, stream](_as_volumes(grad_out), _as_volumes(grad_x), True)


def launch_adaptive_max_pool_forward(x, out, indices, stream=0):
    _adaptive_max_forward[_grid(out.size), _THREADS, stream](_as_volumes(x), _as_volumes(out), _as_volumes(indices))


# --- torch-facing functions: each serves the entry of either rank ------------------------------------------

def _planes(t):
    """A (N*C, [D,] H, W) device array sharing the memory of a contiguous CUDA tensor."""
    return cuda.as_cuda_array(t.detach()).reshape(t.shape[0] * t.shape[1], *t.shape[2:])


def _stream(t):
    import torch

    return cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def max_pool2d_forward(x, out, indices, p):
    launch_max_pool_forward(_planes(x), _planes(out), None if indices is None else _planes(indices), p.kernel,
                            p.stride, p.padding, p.dilation, _stream(x))


def max_pool2d_backward(grad_out, indices, grad_x):
    bad = launch_max_pool_backward(_planes(grad_out), _planes(indices), _planes(grad_x), _stream(grad_x))
    if bad:
        raise ValueError(f"indices: {bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    launch_avg_pool_forward(_planes(x), _planes(out), p.kernel, p.stride, p.padding, count_include_pad,
                            divisor_override, _stream(x))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    launch_avg_pool_backward(_planes(grad_out), _planes(grad_x), p.kernel, p.stride, p.padding, count_include_pad,
                             divisor_override, _stream(grad_x))


def adaptive_avg_pool2d_forward(x, out):
    launch_adaptive_avg_pool_forward(_planes(x), _planes(out), _stream(x))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    launch_adaptive_avg_pool_backward(_planes(grad_out), _planes(grad_x), _stream(grad_x))


def adaptive_max_pool2d_forward(x, out, indices):
    launch_adaptive_max_pool_forward(_planes(x), _planes(out), _planes(indices), _stream(x))


# The volume entries: the functions above, which take either rank.
max_pool3d_forward = max_pool2d_forward
avg_pool3d_forward = avg_pool2d_forward
avg_pool3d_backward = avg_pool2d_backward
adaptive_avg_pool3d_forward = adaptive_avg_pool2d_forward
adaptive_avg_pool3d_backward = adaptive_avg_pool2d_backward
adaptive_max_pool3d_forward = adaptive_max_pool2d_forward

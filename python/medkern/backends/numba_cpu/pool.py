"""Pooling family as ``@njit(parallel=True)`` kernels over the N*C planes (see backends/CONTRACT.md).
The per-element arithmetic is ``_numba.pool_math``, shared with the numba.cuda backend."""
from __future__ import annotations

import numba
import numpy as np
import torch

from .._numba import pool_math

_m = pool_math.compile_for(numba.njit(inline="always"))
_max_window, _avg_window, _avg_input_grad = _m.max_window, _m.avg_window, _m.avg_input_grad
_adaptive_avg_window, _adaptive_max_window = _m.adaptive_avg_window, _m.adaptive_max_window
_adaptive_avg_input_grad = _m.adaptive_avg_input_grad
_NO_INDICES = np.zeros((1, 1, 1), dtype=np.int64)


def _planes(t: torch.Tensor) -> np.ndarray:
    """A (planes, H, W) numpy view of a contiguous CPU tensor, sharing its memory."""
    a = t.detach().numpy()
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


@numba.njit(parallel=True, cache=True)
def _max_forward(x, out, idx, with_indices, kh, kw, sh, sw, ph, pw, dh, dw):
    for p in numba.prange(out.shape[0]):
        for oh in range(out.shape[1]):
            for ow in range(out.shape[2]):
                m, best = _max_window(x, p, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
                out[p, oh, ow] = m
                if with_indices:
                    idx[p, oh, ow] = best


@numba.njit(parallel=True, cache=True)
def _scatter_by_indices(dy, idx, dx):
    planes, H, W = dx.shape
    n_out = dy.shape[1] * dy.shape[2]
    bad = np.zeros(planes, dtype=np.int64)
    for p in numba.prange(planes):
        flat_dx = dx[p].reshape(H * W)
        flat_dy = dy[p].reshape(n_out)
        flat_idx = idx[p].reshape(n_out)
        flat_dx[:] = 0
        for i in range(n_out):
            k = flat_idx[i]
            if 0 <= k < H * W:
                flat_dx[k] += flat_dy[i]
            else:
                bad[p] += 1
    return bad.sum()


# Forward and backward of an average pooling share one kernel: each sets every element of dst (the output,
# or grad_x) from src (x, or grad_out) through that direction's per-element function.
@numba.njit(parallel=True, cache=True)
def _avg(src, dst, backward, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, A, B = dst.shape
    for p in numba.prange(planes):
        for i in range(A):
            for j in range(B):
                if backward:
                    dst[p, i, j] = _avg_input_grad(src, p, i, j, A, B, kh, kw, sh, sw, ph, pw, include_pad, divisor)
                else:
                    dst[p, i, j] = _avg_window(src, p, i, j, kh, kw, sh, sw, ph, pw, include_pad, divisor)


@numba.njit(parallel=True, cache=True)
def _adaptive_avg(src, dst, backward):
    planes, A, B = dst.shape
    for p in numba.prange(planes):
        for i in range(A):
            for j in range(B):
                dst[p, i, j] = (_adaptive_avg_input_grad(src, p, i, j, A, B) if backward else
                                _adaptive_avg_window(src, p, i, j, A, B))


@numba.njit(parallel=True, cache=True)
def _adaptive_max_forward(x, out, idx):
    planes, P, Q = out.shape
    for p in numba.prange(planes):
        for oh in range(P):
            for ow in range(Q):
                m, best = _adaptive_max_window(x, p, oh, ow, P, Q)
                out[p, oh, ow] = m
                idx[p, oh, ow] = best


def max_pool2d_forward(x, out, indices, p):
    with_indices = indices is not None
    _max_forward(_planes(x), _planes(out), _planes(indices) if with_indices else _NO_INDICES, with_indices,
                 *p.kernel, *p.stride, *p.padding, *p.dilation)


def max_pool2d_backward(grad_out, indices, grad_x):
    bad = _scatter_by_indices(_planes(grad_out), _planes(indices), _planes(grad_x))
    if bad:
        raise ValueError(f"indices: {bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    _avg(_planes(x), _planes(out), False, *p.kernel, *p.stride, *p.padding, count_include_pad, divisor_override or 0)


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _avg(_planes(grad_out), _planes(grad_x), True, *p.kernel, *p.stride, *p.padding, count_include_pad,
         divisor_override or 0)


def adaptive_avg_pool2d_forward(x, out):
    _adaptive_avg(_planes(x), _planes(out), False)


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    _adaptive_avg(_planes(grad_out), _planes(grad_x), True)


def adaptive_max_pool2d_forward(x, out, indices):
    _adaptive_max_forward(_planes(x), _planes(out), _planes(indices))

"""Pooling family as ``@njit(parallel=True)`` kernels over the N*C planes or volumes (see
backends/CONTRACT.md). The kernels are written for volumes; a 2-d call runs them on planes as volumes of
depth one (``backends._volumes``), so each function below serves an entry of either rank. The
per-element arithmetic is ``_numba.pool_math``, shared with the numba.cuda backend."""
from __future__ import annotations

import math

import numba
import numpy as np
import torch

from .._numba import pool_math
from .._volumes import pool_window, volume_shape

_m = pool_math.compile_for(numba.njit(inline="always"))
_max_window, _avg_window, _avg_input_grad = _m.max_window, _m.avg_window, _m.avg_input_grad
_adaptive_avg_window, _adaptive_max_window = _m.adaptive_avg_window, _m.adaptive_max_window
_adaptive_avg_input_grad = _m.adaptive_avg_input_grad
_NO_INDICES = np.zeros((1, 1, 1, 1), dtype=np.int64)


def _volumes(t: torch.Tensor) -> np.ndarray:
    """A (N*C, D, H, W) numpy view of a contiguous (N, C, [D,] H, W) CPU tensor, sharing its memory."""
    N, C, D, H, W = volume_shape(t.shape)
    return t.detach().numpy().reshape(N * C, D, H, W)


def _flat_planes(t: torch.Tensor) -> np.ndarray:
    """A (N*C, elements per plane) numpy view of a contiguous CPU tensor, sharing its memory."""
    return t.detach().numpy().reshape(t.shape[0] * t.shape[1], math.prod(t.shape[2:]))


@numba.njit(parallel=True, cache=True)
def _max_forward(x, out, idx, with_indices, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):
    volumes, O, P, Q = out.shape
    for v in numba.prange(volumes):
        for od in range(O):
            for oh in range(P):
                for ow in range(Q):
                    m, best = _max_window(x, v, od, oh, ow, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw)
                    out[v, od, oh, ow] = m
                    if with_indices:
                        idx[v, od, oh, ow] = best


@numba.njit(parallel=True, cache=True)
def _scatter_by_indices(dy, idx, dx):
    """dx (planes, n_in), dy and idx (planes, n_out): dx = 0, then dx[p, idx[p, i]] += dy[p, i]. Returns
    how many indices were outside [0, n_in) (skipped)."""
    planes, n_in = dx.shape
    bad = np.zeros(planes, dtype=np.int64)
    for p in numba.prange(planes):
        dx[p, :] = 0
        for i in range(dy.shape[1]):
            k = idx[p, i]
            if 0 <= k < n_in:
                dx[p, k] += dy[p, i]
            else:
                bad[p] += 1
    return bad.sum()


# Forward and backward of an average pooling share one kernel: each sets every element of dst (the output,
# or grad_x) from src (x, or grad_out) through that direction's per-element function.
@numba.njit(parallel=True, cache=True)
def _avg(src, dst, backward, kd, kh, kw, sd, sh, sw, pd, ph, pw, include_pad, divisor):
    volumes, A, B, C = dst.shape
    for v in numba.prange(volumes):
        for i in range(A):
            for j in range(B):
                for k in range(C):
                    if backward:
                        dst[v, i, j, k] = _avg_input_grad(src, v, i, j, k, A, B, C, kd, kh, kw, sd, sh, sw, pd, ph,
                                                          pw, include_pad, divisor)
                    else:
                        dst[v, i, j, k] = _avg_window(src, v, i, j, k, kd, kh, kw, sd, sh, sw, pd, ph, pw,
                                                      include_pad, divisor)


@numba.njit(parallel=True, cache=True)
def _adaptive_avg(src, dst, backward):
    volumes, A, B, C = dst.shape
    for v in numba.prange(volumes):
        for i in range(A):
            for j in range(B):
                for k in range(C):
                    dst[v, i, j, k] = (_adaptive_avg_input_grad(src, v, i, j, k, A, B, C) if backward else
                                       _adaptive_avg_window(src, v, i, j, k, A, B, C))


@numba.njit(parallel=True, cache=True)
def _adaptive_max_forward(x, out, idx):
    volumes, O, P, Q = out.shape
    for v in numba.prange(volumes):
        for od in range(O):
            for oh in range(P):
                for ow in range(Q):
                    m, best = _adaptive_max_window(x, v, od, oh, ow, O, P, Q)
                    out[v, od, oh, ow] = m
                    idx[v, od, oh, ow] = best


def max_pool2d_forward(x, out, indices, p):
    with_indices = indices is not None
    _max_forward(_volumes(x), _volumes(out), _volumes(indices) if with_indices else _NO_INDICES, with_indices,
                 *pool_window(p.kernel, p.stride, p.padding, p.dilation))


def max_pool2d_backward(grad_out, indices, grad_x):
    bad = _scatter_by_indices(_flat_planes(grad_out), _flat_planes(indices), _flat_planes(grad_x))
    if bad:
        raise ValueError(f"indices: {bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    _avg(_volumes(x), _volumes(out), False, *pool_window(p.kernel, p.stride, p.padding), count_include_pad,
         divisor_override or 0)


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _avg(_volumes(grad_out), _volumes(grad_x), True, *pool_window(p.kernel, p.stride, p.padding), count_include_pad,
         divisor_override or 0)


def adaptive_avg_pool2d_forward(x, out):
    _adaptive_avg(_volumes(x), _volumes(out), False)


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    _adaptive_avg(_volumes(grad_out), _volumes(grad_x), True)


def adaptive_max_pool2d_forward(x, out, indices):
    _adaptive_max_forward(_volumes(x), _volumes(out), _volumes(indices))


# The volume entries: the functions above, which take either rank.
max_pool3d_forward = max_pool2d_forward
avg_pool3d_forward = avg_pool2d_forward
avg_pool3d_backward = avg_pool2d_backward
adaptive_avg_pool3d_forward = adaptive_avg_pool2d_forward
adaptive_avg_pool3d_backward = adaptive_avg_pool2d_backward
adaptive_max_pool3d_forward = adaptive_max_pool2d_forward

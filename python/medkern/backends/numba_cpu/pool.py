"""Pooling family as ``@njit(parallel=True)`` kernels over the N*C planes (see backends/CONTRACT.md)."""
from __future__ import annotations

import numba
import numpy as np
import torch

_NO_INDICES = np.zeros((1, 1, 1), dtype=np.int64)


def _planes(t: torch.Tensor) -> np.ndarray:
    """A (planes, H, W) numpy view of a contiguous CPU tensor, sharing its memory."""
    a = t.detach().numpy()
    return a.reshape(a.shape[0] * a.shape[1], a.shape[2], a.shape[3])


@numba.njit(inline="always")
def _first_in_range(start, step):
    while start < 0:
        start += step
    return start


@numba.njit(parallel=True, cache=True)
def _max_forward(x, out, idx, with_indices, kh, kw, sh, sw, ph, pw, dh, dw):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for p in numba.prange(planes):
        for oh in range(P):
            h_first = _first_in_range(oh * sh - ph, dh)
            for ow in range(Q):
                m = -np.inf
                best = h_first * W + _first_in_range(ow * sw - pw, dw)
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= H:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw < 0 or iw >= W:
                            continue
                        v = x[p, ih, iw]
                        if v > m or v != v:  # torch's rule: first of tied maxima, NaN propagates
                            m = v
                            best = ih * W + iw
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


@numba.njit(inline="always")
def _axis_count(o, size, k, stride, pad, include_pad):
    a = o * stride - pad
    b = min(a + k, size + pad)
    if include_pad:
        return b - a
    return min(b, size) - max(a, 0)


@numba.njit(parallel=True, cache=True)
def _avg_forward(x, out, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for p in numba.prange(planes):
        for oh in range(P):
            h0, h1 = max(oh * sh - ph, 0), min(oh * sh - ph + kh, H)
            for ow in range(Q):
                w0, w1 = max(ow * sw - pw, 0), min(ow * sw - pw + kw, W)
                acc = x[p, 0, 0] * 0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc += x[p, ih, iw]
                d = divisor if divisor != 0 else (_axis_count(oh, H, kh, sh, ph, include_pad)
                                                  * _axis_count(ow, W, kw, sw, pw, include_pad))
                out[p, oh, ow] = acc / d


@numba.njit(parallel=True, cache=True)
def _avg_backward(dy, dx, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for p in numba.prange(planes):
        dx[p] = 0
        for oh in range(P):
            h0, h1 = max(oh * sh - ph, 0), min(oh * sh - ph + kh, H)
            for ow in range(Q):
                w0, w1 = max(ow * sw - pw, 0), min(ow * sw - pw + kw, W)
                d = divisor if divisor != 0 else (_axis_count(oh, H, kh, sh, ph, include_pad)
                                                  * _axis_count(ow, W, kw, sw, pw, include_pad))
                g = dy[p, oh, ow] / d
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[p, ih, iw] += g


@numba.njit(parallel=True, cache=True)
def _adaptive_avg_forward(x, out):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for p in numba.prange(planes):
        for oh in range(P):
            h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
            for ow in range(Q):
                w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
                acc = x[p, 0, 0] * 0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        acc += x[p, ih, iw]
                out[p, oh, ow] = acc / ((h1 - h0) * (w1 - w0))


@numba.njit(parallel=True, cache=True)
def _adaptive_avg_backward(dy, dx):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for p in numba.prange(planes):
        dx[p] = 0
        for oh in range(P):
            h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
            for ow in range(Q):
                w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
                g = dy[p, oh, ow] / ((h1 - h0) * (w1 - w0))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        dx[p, ih, iw] += g


@numba.njit(parallel=True, cache=True)
def _adaptive_max_forward(x, out, idx):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for p in numba.prange(planes):
        for oh in range(P):
            h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
            for ow in range(Q):
                w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
                m = -np.inf
                best = h0 * W + w0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        v = x[p, ih, iw]
                        if v > m or v != v:
                            m = v
                            best = ih * W + iw
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
    _avg_forward(_planes(x), _planes(out), *p.kernel, *p.stride, *p.padding, count_include_pad, divisor_override or 0)


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _avg_backward(_planes(grad_out), _planes(grad_x), *p.kernel, *p.stride, *p.padding, count_include_pad,
                  divisor_override or 0)


def adaptive_avg_pool2d_forward(x, out):
    _adaptive_avg_forward(_planes(x), _planes(out))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    _adaptive_avg_backward(_planes(grad_out), _planes(grad_x))


def adaptive_max_pool2d_forward(x, out, indices):
    _adaptive_max_forward(_planes(x), _planes(out), _planes(indices))

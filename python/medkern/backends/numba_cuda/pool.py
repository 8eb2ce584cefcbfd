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

_THREADS = 128


@cuda.jit(device=True, inline=True)
def _first_in_range(start, step):
    while start < 0:
        start += step
    return start


@cuda.jit(device=True, inline=True)
def _axis_count(o, size, k, stride, pad, include_pad):
    a = o * stride - pad
    b = min(a + k, size + pad)
    if include_pad:
        return b - a
    return min(b, size) - max(a, 0)


@cuda.jit
def _max_forward(x, out, idx, with_indices, kh, kw, sh, sw, ph, pw, dh, dw):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, rest = t // (P * Q), t % (P * Q)
        oh, ow = rest // Q, rest % Q
        m = -math.inf
        best = _first_in_range(oh * sh - ph, dh) * W + _first_in_range(ow * sw - pw, dw)
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


@cuda.jit
def _zero(a):
    planes, H, W = a.shape
    for t in range(cuda.grid(1), planes * H * W, cuda.gridsize(1)):
        a[t // (H * W), (t % (H * W)) // W, t % W] = 0


@cuda.jit
def _scatter_by_indices(dy, idx, dx, bad):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, rest = t // (P * Q), t % (P * Q)
        k = idx[p, rest // Q, rest % Q]
        if 0 <= k < H * W:
            cuda.atomic.add(dx, (p, k // W, k % W), dy[p, rest // Q, rest % Q])
        else:
            cuda.atomic.add(bad, 0, 1)


@cuda.jit
def _avg_forward(x, out, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, rest = t // (P * Q), t % (P * Q)
        oh, ow = rest // Q, rest % Q
        acc = x[p, 0, 0] * 0
        for ih in range(max(oh * sh - ph, 0), min(oh * sh - ph + kh, H)):
            for iw in range(max(ow * sw - pw, 0), min(ow * sw - pw + kw, W)):
                acc += x[p, ih, iw]
        d = divisor
        if d == 0:
            d = _axis_count(oh, H, kh, sh, ph, include_pad) * _axis_count(ow, W, kw, sw, pw, include_pad)
        out[p, oh, ow] = acc / d


@cuda.jit
def _avg_backward(dy, dx, kh, kw, sh, sw, ph, pw, include_pad, divisor):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for t in range(cuda.grid(1), planes * H * W, cuda.gridsize(1)):
        p, rest = t // (H * W), t % (H * W)
        ih, iw = rest // W, rest % W
        # outputs whose window [o*s - pad, o*s - pad + k) contains i: o in [ceil((i+pad-k+1)/s), floor((i+pad)/s)]
        oh0, oh1 = max(-((kh - 1 - ih - ph) // sh), 0), min((ih + ph) // sh, P - 1)
        ow0, ow1 = max(-((kw - 1 - iw - pw) // sw), 0), min((iw + pw) // sw, Q - 1)
        acc = dy[p, 0, 0] * 0
        for oh in range(oh0, oh1 + 1):
            for ow in range(ow0, ow1 + 1):
                d = divisor
                if d == 0:
                    d = _axis_count(oh, H, kh, sh, ph, include_pad) * _axis_count(ow, W, kw, sw, pw, include_pad)
                acc += dy[p, oh, ow] / d
        dx[p, ih, iw] = acc


@cuda.jit
def _adaptive_avg_forward(x, out):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, rest = t // (P * Q), t % (P * Q)
        oh, ow = rest // Q, rest % Q
        h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
        w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
        acc = x[p, 0, 0] * 0
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                acc += x[p, ih, iw]
        out[p, oh, ow] = acc / ((h1 - h0) * (w1 - w0))


@cuda.jit
def _adaptive_avg_backward(dy, dx):
    planes, H, W = dx.shape
    _, P, Q = dy.shape
    for t in range(cuda.grid(1), planes * H * W, cuda.gridsize(1)):
        p, rest = t // (H * W), t % (H * W)
        ih, iw = rest // W, rest % W
        acc = dy[p, 0, 0] * 0
        for oh in range((ih * P) // H, min(((ih + 1) * P + H - 1) // H, P)):
            h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
            if ih < h0 or ih >= h1:
                continue
            for ow in range((iw * Q) // W, min(((iw + 1) * Q + W - 1) // W, Q)):
                w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
                if iw < w0 or iw >= w1:
                    continue
                acc += dy[p, oh, ow] / ((h1 - h0) * (w1 - w0))
        dx[p, ih, iw] = acc


@cuda.jit
def _adaptive_max_forward(x, out, idx):
    planes, H, W = x.shape
    _, P, Q = out.shape
    for t in range(cuda.grid(1), planes * P * Q, cuda.gridsize(1)):
        p, rest = t // (P * Q), t % (P * Q)
        oh, ow = rest // Q, rest % Q
        h0, h1 = (oh * H) // P, ((oh + 1) * H + P - 1) // P
        w0, w1 = (ow * W) // Q, ((ow + 1) * W + Q - 1) // Q
        m = -math.inf
        best = h0 * W + w0
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                v = x[p, ih, iw]
                if v > m or v != v:
                    m = v
                    best = ih * W + iw
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
    _avg_forward[_grid(out.size), _THREADS, stream](x, out, *kernel, *stride, *padding, count_include_pad,
                                                    divisor_override or 0)


def launch_avg_pool2d_backward(grad_out, grad_x, kernel, stride, padding, count_include_pad, divisor_override,
                               stream=0):
    _avg_backward[_grid(grad_x.size), _THREADS, stream](grad_out, grad_x, *kernel, *stride, *padding,
                                                        count_include_pad, divisor_override or 0)


def launch_adaptive_avg_pool2d_forward(x, out, stream=0):
    _adaptive_avg_forward[_grid(out.size), _THREADS, stream](x, out)


def launch_adaptive_avg_pool2d_backward(grad_out, grad_x, stream=0):
    _adaptive_avg_backward[_grid(grad_x.size), _THREADS, stream](grad_out, grad_x)


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

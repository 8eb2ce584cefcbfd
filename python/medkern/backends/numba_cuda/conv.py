"""conv2d family as ``numba.cuda`` kernels (see backends/CONTRACT.md): one thread per element of the
output being computed, each a direct sum, so every result is written once and no atomics are needed.
Each public function wraps an array-level ``launch_*`` that also accepts numpy arrays, so the kernels
run under ``NUMBA_ENABLE_CUDASIM=1`` on the CPU in tests."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

_THREADS = 128


@cuda.jit
def _forward(x, w, b, has_bias, y, sh, sw, ph, pw, dh, dw, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    _, _, P, Q = y.shape
    Kg = K // groups
    for t in range(cuda.grid(1), N * K * P * Q, cuda.gridsize(1)):
        q, p, k, n = t % Q, (t // Q) % P, (t // (Q * P)) % K, t // (Q * P * K)
        c0 = (k // Kg) * Cg
        acc = x[0, 0, 0, 0] * 0
        if has_bias:
            acc += b[k]
        for c in range(Cg):
            for r in range(R):
                ih = p * sh - ph + r * dh
                if ih < 0 or ih >= H:
                    continue
                for s in range(S):
                    iw = q * sw - pw + s * dw
                    if 0 <= iw < W:
                        acc += x[n, c0 + c, ih, iw] * w[k, c, r, s]
        y[n, k, p, q] = acc


@cuda.jit
def _grad_input(dy, w, dx, sh, sw, ph, pw, dh, dw, groups):
    N, C, H, W = dx.shape
    K, Cg, R, S = w.shape
    _, _, P, Q = dy.shape
    Kg = K // groups
    for t in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
        iw, ih, c, n = t % W, (t // W) % H, (t // (W * H)) % C, t // (W * H * C)
        g, cg = c // Cg, c % Cg
        acc = dy[0, 0, 0, 0] * 0
        for r in range(R):
            u = ih + ph - r * dh  # = p * sh for the output row p that reads ih through tap r
            if u < 0 or u % sh != 0 or u // sh >= P:
                continue
            for s in range(S):
                v = iw + pw - s * dw
                if v < 0 or v % sw != 0 or v // sw >= Q:
                    continue
                for kk in range(Kg):
                    acc += dy[n, g * Kg + kk, u // sh, v // sw] * w[g * Kg + kk, cg, r, s]
        dx[n, c, ih, iw] = acc


@cuda.jit
def _grad_weight(dy, x, dwt, sh, sw, ph, pw, dh, dw, groups):
    N, C, H, W = x.shape
    K, Cg, R, S = dwt.shape
    _, _, P, Q = dy.shape
    Kg = K // groups
    for t in range(cuda.grid(1), K * Cg * R * S, cuda.gridsize(1)):
        s, r, c, k = t % S, (t // S) % R, (t // (S * R)) % Cg, t // (S * R * Cg)
        ci = (k // Kg) * Cg + c
        acc = x[0, 0, 0, 0] * 0
        for n in range(N):
            for p in range(P):
                ih = p * sh - ph + r * dh
                if ih < 0 or ih >= H:
                    continue
                for q in range(Q):
                    iw = q * sw - pw + s * dw
                    if 0 <= iw < W:
                        acc += dy[n, k, p, q] * x[n, ci, ih, iw]
        dwt[k, c, r, s] = acc


@cuda.jit
def _grad_bias(dy, db):
    N, K, P, Q = dy.shape
    for k in range(cuda.grid(1), K, cuda.gridsize(1)):
        acc = dy[0, 0, 0, 0] * 0
        for n in range(N):
            for p in range(P):
                for q in range(Q):
                    acc += dy[n, k, p, q]
        db[k] = acc


def _grid(n: int) -> int:
    return max(1, min(math.ceil(n / _THREADS), 65535))


# --- array-level launchers: numba device arrays, or numpy arrays under the simulator ---------------------

def launch_conv2d_forward(x, w, b, out, stride, padding, dilation, groups, stream=0):
    has_bias = b is not None
    if not has_bias:  # the kernel's signature needs an array either way
        b = np.zeros(1, dtype=x.dtype) if isinstance(x, np.ndarray) else cuda.device_array(1, dtype=x.dtype,
                                                                                           stream=stream)
    _forward[_grid(out.size), _THREADS, stream](x, w, b, has_bias, out, *stride, *padding, *dilation, groups)


def launch_conv2d_grad_input(dy, w, dx, stride, padding, dilation, groups, stream=0):
    _grad_input[_grid(dx.size), _THREADS, stream](dy, w, dx, *stride, *padding, *dilation, groups)


def launch_conv2d_grad_weight(dy, x, dw, stride, padding, dilation, groups, stream=0):
    _grad_weight[_grid(dw.size), _THREADS, stream](dy, x, dw, *stride, *padding, *dilation, groups)


def launch_conv2d_grad_bias(dy, db, stream=0):
    _grad_bias[_grid(db.size), _THREADS, stream](dy, db)


# --- torch-facing functions ---------------------------------------------------------------------------

def _dev(t):
    return cuda.as_cuda_array(t.detach())


def _stream(t):
    import torch

    return cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def conv2d_forward(x, weight, bias, out, p):
    launch_conv2d_forward(_dev(x), _dev(weight), None if bias is None else _dev(bias), _dev(out), p.stride, p.padding,
                          p.dilation, p.groups, _stream(x))


def conv2d_grad_input(grad_out, weight, grad_x, p):
    launch_conv2d_grad_input(_dev(grad_out), _dev(weight), _dev(grad_x), p.stride, p.padding, p.dilation, p.groups,
                             _stream(grad_x))


def conv2d_grad_weight(grad_out, x, grad_w, p):
    launch_conv2d_grad_weight(_dev(grad_out), _dev(x), _dev(grad_w), p.stride, p.padding, p.dilation, p.groups,
                              _stream(x))


def conv2d_grad_bias(grad_out, grad_b):
    launch_conv2d_grad_bias(_dev(grad_out), _dev(grad_b), _stream(grad_out))

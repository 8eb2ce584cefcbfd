"""conv2d family as ``numba.cuda`` kernels (see backends/CONTRACT.md).

A direct formulation: one thread per output element for forward and grad_input (grad_input gathers,
through ``o = (i + pad - tap*dilation) / stride`` where that is whole and in range, from the outputs that
read its input element), one thread per weight element for grad_weight, and one block per output
channel for grad_bias (a fixed-order shared-memory tree). Every result is written exactly once, with no
atomics, so results are deterministic. The index arithmetic is ``_numba.conv_math``, shared with the
numba CPU backend.

Sums run in the arrays' dtype: the kernels are built once per dtype (:func:`_kernels`), which gives each
a zero of that dtype and, for grad_bias, a shared buffer of that dtype. (Starting a sum from
``x[0, 0, 0, 0] * 0`` instead would turn every output into NaN whenever that one element is inf or NaN.)

Each public function wraps an array-level ``launch_*`` that takes numba device arrays, or plain numpy
arrays under ``NUMBA_ENABLE_CUDASIM=1``, so the kernels are tested on the CPU simulator.
"""
from __future__ import annotations

import contextlib
import functools
import math
from types import SimpleNamespace

import numba
import numpy as np
from numba import cuda

from .._numba.conv_math import position, reader, span, tap_offset

__all__ = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias",
           "launch_conv2d_forward", "launch_conv2d_grad_input", "launch_conv2d_grad_weight",
           "launch_conv2d_grad_bias"]

THREADS = 128
BIAS_THREADS = 128  # threads per grad_bias block; a power of two (the tree halves it)
MAX_BLOCKS = 65535  # grids are capped; the kernels' grid-stride loops cover larger outputs


@functools.lru_cache(maxsize=None)
def _kernels(dtype: np.dtype) -> SimpleNamespace:
    """The four kernels for one dtype (numba compiles each on its first launch)."""
    zero = dtype.type(0)
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def forward(x, w, b, has_bias, out, sh, sw, ph, pw, dh, dw, groups, act, slope):
        N, C, H, W = x.shape
        K, Cg, R, S = w.shape
        P, Q = out.shape[2], out.shape[3]
        Kg = K // groups
        for t in range(cuda.grid(1), N * K * P * Q, cuda.gridsize(1)):
            q, p, k, n = t % Q, t // Q % P, t // (Q * P) % K, t // (Q * P * K)
            c_first = (k // Kg) * Cg  # first input channel of k's group
            acc = zero
            if has_bias:
                acc = b[k]
            for c in range(Cg):
                for r in range(R):
                    h = position(p, tap_offset(r, dh, ph), sh)
                    if h < 0 or h >= H:
                        continue
                    for s in range(S):
                        v = position(q, tap_offset(s, dw, pw), sw)
                        if 0 <= v < W:
                            acc += x[n, c_first + c, h, v] * w[k, c, r, s]
            if act != 0 and acc < zero:  # the fused epilogue (relu(NaN) stays NaN: NaN < 0 is false)
                acc = zero if act == 1 else acc * slope
            out[n, k, p, q] = acc

    @cuda.jit
    def grad_input(dy, w, dx, sh, sw, ph, pw, dh, dw, groups):
        N, C, H, W = dx.shape
        K, Cg, R, S = w.shape
        P, Q = dy.shape[2], dy.shape[3]
        Kg = K // groups
        for t in range(cuda.grid(1), N * C * H * W, cuda.gridsize(1)):
            v, h, c, n = t % W, t // W % H, t // (W * H) % C, t // (W * H * C)
            g, cl = c // Cg, c % Cg
            acc = zero
            for r in range(R):
                p = reader(h, tap_offset(r, dh, ph), sh, P)
                if p < 0:
                    continue
                for s in range(S):
                    q = reader(v, tap_offset(s, dw, pw), sw, Q)
                    if q < 0:
                        continue
                    for kl in range(Kg):
                        k = g * Kg + kl
                        acc += dy[n, k, p, q] * w[k, cl, r, s]
            dx[n, c, h, v] = acc

    @cuda.jit
    def grad_weight(dy, x, dwt, sh, sw, ph, pw, dh, dw, groups):
        N, C, H, W = x.shape
        K, Cg, R, S = dwt.shape
        P, Q = dy.shape[2], dy.shape[3]
        Kg = K // groups
        for t in range(cuda.grid(1), K * Cg * R * S, cuda.gridsize(1)):
            s, r, cl, k = t % S, t // S % R, t // (S * R) % Cg, t // (S * R * Cg)
            c = (k // Kg) * Cg + cl
            row, col = tap_offset(r, dh, ph), tap_offset(s, dw, pw)
            p_lo, p_hi = span(row, sh, H, P)
            q_lo, q_hi = span(col, sw, W, Q)
            acc = zero
            for n in range(N):
                for p in range(p_lo, p_hi):
                    for q in range(q_lo, q_hi):
                        acc += dy[n, k, p, q] * x[n, c, position(p, row, sh), position(q, col, sw)]
            dwt[k, cl, r, s] = acc

    @cuda.jit
    def grad_bias(dy, db):
        # one block per channel (grid-stride over channels); each thread sums a strided share of the
        # channel's N*P*Q elements, then a shared-memory tree in a fixed order
        N, K, P, Q = dy.shape
        PQ = P * Q
        partial = cuda.shared.array(BIAS_THREADS, scalar)
        tid = cuda.threadIdx.x
        for k in range(cuda.blockIdx.x, K, cuda.gridDim.x):
            acc = zero
            for i in range(tid, N * PQ, BIAS_THREADS):
                n, pq = i // PQ, i % PQ
                acc += dy[n, k, pq // Q, pq % Q]
            partial[tid] = acc
            cuda.syncthreads()
            half = BIAS_THREADS // 2
            while half > 0:
                if tid < half:
                    partial[tid] += partial[tid + half]
                cuda.syncthreads()
                half //= 2
            if tid == 0:
                db[k] = partial[0]
            cuda.syncthreads()  # partial is reused by the block's next channel

    return SimpleNamespace(forward=forward, grad_input=grad_input, grad_weight=grad_weight, grad_bias=grad_bias)


def _blocks(n: int) -> int:
    return max(1, min(math.ceil(n / THREADS), MAX_BLOCKS))


# --- array-level launchers: numba device arrays, or numpy arrays under the simulator ---------------------

def launch_conv2d_forward(x, w, b, out, stride, padding, dilation, groups, activation=0, negative_slope=0.0,
                          stream=0):
    has_bias = b is not None
    if not has_bias:
        # the kernel takes an array either way; a 1-D view of w has bias's type and is never read
        b = w.reshape(w.size)
    _kernels(np.dtype(x.dtype)).forward[_blocks(out.size), THREADS, stream](
        x, w, b, has_bias, out, *stride, *padding, *dilation, groups, activation,
        np.dtype(x.dtype).type(negative_slope))


def launch_conv2d_grad_input(dy, w, dx, stride, padding, dilation, groups, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_input[_blocks(dx.size), THREADS, stream](
        dy, w, dx, *stride, *padding, *dilation, groups)


def launch_conv2d_grad_weight(dy, x, dw, stride, padding, dilation, groups, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_weight[_blocks(dw.size), THREADS, stream](
        dy, x, dw, *stride, *padding, *dilation, groups)


def launch_conv2d_grad_bias(dy, db, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_bias[max(1, min(db.size, MAX_BLOCKS)), BIAS_THREADS, stream](dy, db)


# --- torch-facing functions ---------------------------------------------------------------------------

def _dev(t):
    """A numba device array sharing the memory of a contiguous CUDA tensor (zero-copy)."""
    return cuda.as_cuda_array(t.detach())


@contextlib.contextmanager
def _stream_of(t):
    """Make t's GPU current for numba and yield torch's current stream there, to launch on."""
    import torch

    with cuda.gpus[t.device.index]:
        yield cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def _geometry(p):
    return tuple(map(int, p.stride)), tuple(map(int, p.padding)), tuple(map(int, p.dilation)), int(p.groups)


def conv2d_forward(x, weight, bias, out, p):
    with _stream_of(x) as stream:
        launch_conv2d_forward(_dev(x), _dev(weight), None if bias is None else _dev(bias), _dev(out),
                              *_geometry(p), p.activation, p.negative_slope, stream=stream)


def conv2d_grad_input(grad_out, weight, grad_x, p):
    with _stream_of(grad_x) as stream:
        launch_conv2d_grad_input(_dev(grad_out), _dev(weight), _dev(grad_x), *_geometry(p), stream=stream)


def conv2d_grad_weight(grad_out, x, grad_w, p):
    with _stream_of(x) as stream:
        launch_conv2d_grad_weight(_dev(grad_out), _dev(x), _dev(grad_w), *_geometry(p), stream=stream)


def conv2d_grad_bias(grad_out, grad_b):
    with _stream_of(grad_out) as stream:
        launch_conv2d_grad_bias(_dev(grad_out), _dev(grad_b), stream=stream)

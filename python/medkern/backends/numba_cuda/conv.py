"""conv2d and conv3d families as ``numba.cuda`` kernels (see backends/CONTRACT.md).

The kernels are written for volumes (N, C, D, H, W); planes run as volumes of depth one
(``backends._volumes``), so each public function serves the entry of either rank. A direct formulation:
one thread per output element for forward and grad_input (grad_input gathers, through
``o = (i + pad - tap*dilation) / stride`` where that is whole and in range, from the outputs that read its
input element), one thread per weight element for grad_weight, and one block per output channel for
grad_bias (a fixed-order shared-memory tree). Every result is written exactly once, with no
atomics, so results are deterministic. The index arithmetic is ``_numba.conv_math``, shared with the
numba CPU backend.

Sums run in the arrays' dtype: the kernels are built once per dtype (:func:`_kernels`), which gives each
a zero of that dtype and, for grad_bias, a shared buffer of that dtype. (Starting a sum from
``x[0, 0, 0, 0, 0] * 0`` instead would turn every output into NaN whenever that one element is inf or NaN.)

Each public function wraps an array-level ``launch_*`` that takes numba device arrays, or plain numpy
arrays under ``NUMBA_ENABLE_CUDASIM=1``, so the kernels are tested on the CPU simulator; the launchers take
planes (N, C, H, W) with two geometry values per field or volumes with three.
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
from .._volumes import in_depth, volume_shape

__all__ = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias", "conv3d_forward",
           "conv3d_grad_input", "conv3d_grad_weight", "launch_conv_forward", "launch_conv_grad_input",
           "launch_conv_grad_weight", "launch_conv2d_grad_bias"]

THREADS = 128
BIAS_THREADS = 128  # threads per grad_bias block; a power of two (the tree halves it)
MAX_BLOCKS = 65535  # grids are capped; the kernels' grid-stride loops cover larger outputs


@functools.lru_cache(maxsize=None)
def _kernels(dtype: np.dtype) -> SimpleNamespace:
    """The four kernels for one dtype (numba compiles each on its first launch)."""
    zero = dtype.type(0)
    scalar = numba.from_dtype(dtype)

    @cuda.jit
    def forward(x, w, b, has_bias, out, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups, act, slope):
        N, C, D, H, W = x.shape
        K, Cg, T, R, S = w.shape
        O, P, Q = out.shape[2], out.shape[3], out.shape[4]
        Kg = K // groups
        for i in range(cuda.grid(1), N * K * O * P * Q, cuda.gridsize(1)):
            q, p, od, k, n = i % Q, i // Q % P, i // (Q * P) % O, i // (Q * P * O) % K, i // (Q * P * O * K)
            c_first = (k // Kg) * Cg  # first input channel of k's group
            acc = zero
            if has_bias:
                acc = b[k]
            for c in range(Cg):
                for t in range(T):
                    d = position(od, tap_offset(t, dd, pd), sd)
                    if d < 0 or d >= D:
                        continue
                    for r in range(R):
                        h = position(p, tap_offset(r, dh, ph), sh)
                        if h < 0 or h >= H:
                            continue
                        for s in range(S):
                            v = position(q, tap_offset(s, dw, pw), sw)
                            if 0 <= v < W:
                                acc += x[n, c_first + c, d, h, v] * w[k, c, t, r, s]
            if act != 0 and acc < zero:  # the fused epilogue (relu(NaN) stays NaN: NaN < 0 is false)
                acc = zero if act == 1 else acc * slope
            out[n, k, od, p, q] = acc

    @cuda.jit
    def grad_input(dy, w, dx, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups):
        N, C, D, H, W = dx.shape
        K, Cg, T, R, S = w.shape
        O, P, Q = dy.shape[2], dy.shape[3], dy.shape[4]
        Kg = K // groups
        for i in range(cuda.grid(1), N * C * D * H * W, cuda.gridsize(1)):
            v, h, d, c, n = i % W, i // W % H, i // (W * H) % D, i // (W * H * D) % C, i // (W * H * D * C)
            g, cl = c // Cg, c % Cg
            acc = zero
            for t in range(T):
                od = reader(d, tap_offset(t, dd, pd), sd, O)
                if od < 0:
                    continue
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
                            acc += dy[n, k, od, p, q] * w[k, cl, t, r, s]
            dx[n, c, d, h, v] = acc

    @cuda.jit
    def grad_weight(dy, x, dwt, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups):
        N, C, D, H, W = x.shape
        K, Cg, T, R, S = dwt.shape
        O, P, Q = dy.shape[2], dy.shape[3], dy.shape[4]
        Kg = K // groups
        for i in range(cuda.grid(1), K * Cg * T * R * S, cuda.gridsize(1)):
            s, r, t, cl, k = i % S, i // S % R, i // (S * R) % T, i // (S * R * T) % Cg, i // (S * R * T * Cg)
            c = (k // Kg) * Cg + cl
            dep, row, col = tap_offset(t, dd, pd), tap_offset(r, dh, ph), tap_offset(s, dw, pw)
            o_lo, o_hi = span(dep, sd, D, O)
            p_lo, p_hi = span(row, sh, H, P)
            q_lo, q_hi = span(col, sw, W, Q)
            acc = zero
            for n in range(N):
                for od in range(o_lo, o_hi):
                    d = position(od, dep, sd)
                    for p in range(p_lo, p_hi):
                        h = position(p, row, sh)
                        for q in range(q_lo, q_hi):
                            acc += dy[n, k, od, p, q] * x[n, c, d, h, position(q, col, sw)]
            dwt[k, cl, t, r, s] = acc

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
# Planes (N, C, H, W) with two values per geometry field, or volumes (N, C, D, H, W) with three.

def _as_volume(a):
    return a.reshape(volume_shape(a.shape))


def _volume_geometry(stride, padding, dilation):
    return (*in_depth(stride, "stride"), *in_depth(padding, "padding"), *in_depth(dilation, "dilation"))


def launch_conv_forward(x, w, b, out, stride, padding, dilation, groups, activation=0, negative_slope=0.0, stream=0):
    has_bias = b is not None
    if not has_bias:
        # the kernel takes an array either way; a 1-D view of w has bias's type and is never read
        b = w.reshape(w.size)
    _kernels(np.dtype(x.dtype)).forward[_blocks(out.size), THREADS, stream](
        _as_volume(x), _as_volume(w), b, has_bias, _as_volume(out), *_volume_geometry(stride, padding, dilation),
        groups, activation, np.dtype(x.dtype).type(negative_slope))


def launch_conv_grad_input(dy, w, dx, stride, padding, dilation, groups, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_input[_blocks(dx.size), THREADS, stream](
        _as_volume(dy), _as_volume(w), _as_volume(dx), *_volume_geometry(stride, padding, dilation), groups)


def launch_conv_grad_weight(dy, x, dw, stride, padding, dilation, groups, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_weight[_blocks(dw.size), THREADS, stream](
        _as_volume(dy), _as_volume(x), _as_volume(dw), *_volume_geometry(stride, padding, dilation), groups)


def launch_conv2d_grad_bias(dy, db, stream=0):
    _kernels(np.dtype(dy.dtype)).grad_bias[max(1, min(db.size, MAX_BLOCKS)), BIAS_THREADS, stream](dy, db)


# --- torch-facing functions: each serves the entry of either rank ------------------------------------------

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
        launch_conv_forward(_dev(x), _dev(weight), None if bias is None else _dev(bias), _dev(out), *_geometry(p),
                            p.activation, p.negative_slope, stream=stream)


def conv2d_grad_input(grad_out, weight, grad_x, p):
    with _stream_of(grad_x) as stream:
        launch_conv_grad_input(_dev(grad_out), _dev(weight), _dev(grad_x), *_geometry(p), stream=stream)


def conv2d_grad_weight(grad_out, x, grad_w, p):
    with _stream_of(x) as stream:
        launch_conv_grad_weight(_dev(grad_out), _dev(x), _dev(grad_w), *_geometry(p), stream=stream)


def conv2d_grad_bias(grad_out, grad_b):
    with _stream_of(grad_out) as stream:
        launch_conv2d_grad_bias(_dev(grad_out), _dev(grad_b), stream=stream)


conv3d_forward, conv3d_grad_input, conv3d_grad_weight = conv2d_forward, conv2d_grad_input, conv2d_grad_weight

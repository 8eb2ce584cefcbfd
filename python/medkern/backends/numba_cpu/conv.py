"""conv2d and conv3d families as ``@numba.njit(parallel=True)`` kernels (see backends/CONTRACT.md).

The kernels are written for volumes (N, C, D, H, W); a 2-d call runs them on planes as volumes of depth
one (``backends._volumes``), so each function below serves the entry of either rank. A direct
formulation, parallel over a dimension whose outputs no other iteration writes:

- forward: one ``prange`` iteration per (n, k) output volume;
- grad_input: one per (n, c) input volume, each element gathering from the outputs that read it;
- grad_weight: one per (k, c) weight slice, summing over the batch and the outputs;
- grad_bias: one per output channel k.

Each kernel handles float32 and float64 (numba specialises on the argument types), groups, stride,
dilation and leading padding; the output extent (O, P, Q) is the output array's shape, which makes the
trailing padding implicit. Sums run in the arrays' dtype. Every element of an output is written.

Loops are written so that the innermost one walks a row of contiguous memory (the output row, the
grad-input row, or the x/grad-output rows of grad_weight). Taps outside the input are not tested per
element: each (tap, output slice or row) pair gets the half-open range of outputs whose input position is
in range (``span``), so the inner loop has no branches and LLVM vectorises it. Indices there are cast to
unsigned: they are never negative, and numba's negative-index wraparound would otherwise stop the
vectoriser. The index arithmetic is ``_numba.conv_math``, shared with the numba.cuda backend.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import uint64

from .._numba.conv_math import position, reader, span, tap_offset
from .._volumes import volume_params, volume_shape

__all__ = ["conv2d_forward", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias", "conv3d_forward",
           "conv3d_grad_input", "conv3d_grad_weight"]


@numba.njit(inline="always")
def _zeros_rows(rows, like_row):
    """A (rows, len(like_row)) array of zeros of like_row's dtype."""
    return np.zeros((rows, like_row.shape[0]), like_row.dtype)


@numba.njit(inline="always")
def _tap_spans(t, r, s, dd, dh, dw, pd, ph, pw, sd, sh, sw, D, H, W, O, P, Q):
    """For tap (t, r, s): its offsets along depth, rows and columns and, per axis, the [lo, hi) of the
    outputs that read inside the input through it."""
    dep, row, col = tap_offset(t, dd, pd), tap_offset(r, dh, ph), tap_offset(s, dw, pw)
    o_lo, o_hi = span(dep, sd, D, O)
    p_lo, p_hi = span(row, sh, H, P)
    q_lo, q_hi = span(col, sw, W, Q)
    return dep, row, col, o_lo, o_hi, p_lo, p_hi, q_lo, q_hi


@numba.njit(parallel=True, cache=True, fastmath=False)
def _forward(x, w, b, has_bias, out, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups, act, slope):
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = w.shape
    O, P, Q = out.shape[2], out.shape[3], out.shape[4]
    Kg = K // groups
    for nk in numba.prange(N * K):
        n, k = nk // K, nk % K
        c_first = (k // Kg) * Cg  # first input channel of k's group
        o = out[n, k]
        if has_bias:
            o[:] = b[k]
        else:
            o[:] = 0
        for c in range(Cg):
            xc = x[n, c_first + c]
            for t in range(T):
                for r in range(R):
                    for s in range(S):
                        wv = w[k, c, t, r, s]
                        dep, row, col, o_lo, o_hi, p_lo, p_hi, q_lo, q_hi = _tap_spans(
                            t, r, s, dd, dh, dw, pd, ph, pw, sd, sh, sw, D, H, W, O, P, Q)
                        for od in range(o_lo, o_hi):
                            out_slice, x_slice = o[od], xc[position(od, dep, sd)]
                            for p in range(p_lo, p_hi):
                                out_row = out_slice[p]
                                x_row = x_slice[position(p, row, sh)]
                                for q in range(q_lo, q_hi):
                                    out_row[uint64(q)] += wv * x_row[uint64(position(q, col, sw))]
        if act != 0:
            flat = o.reshape(O * P * Q)
            for i in range(O * P * Q):
                if flat[i] < 0:  # relu(NaN) stays NaN: NaN < 0 is false
                    flat[i] = flat[i] * slope if act == 2 else 0


@numba.njit(parallel=True, cache=True, fastmath=False)
def _grad_input(dy, w, dx, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups):
    N, C, D, H, W = dx.shape
    K, Cg, T, R, S = w.shape
    O, P, Q = dy.shape[2], dy.shape[3], dy.shape[4]
    Kg = K // groups
    for nc in numba.prange(N * C):
        n, c = nc // C, nc % C
        g, cl = c // Cg, c % Cg
        gx = dx[n, c]
        for d in range(D):
            for h in range(H):
                gx_row = gx[d, h]
                gx_row[:] = 0
                for t in range(T):
                    od = reader(d, tap_offset(t, dd, pd), sd, O)
                    if od < 0:
                        continue
                    for r in range(R):
                        p = reader(h, tap_offset(r, dh, ph), sh, P)
                        if p < 0:
                            continue
                        for kl in range(Kg):
                            k = g * Kg + kl
                            dy_row = dy[n, k, od, p]
                            for s in range(S):
                                wv = w[k, cl, t, r, s]
                                col = tap_offset(s, dw, pw)
                                # each input column of this row is read through tap s by at most one output
                                # column q, so this is a gather, row by row
                                q_lo, q_hi = span(col, sw, W, Q)
                                for q in range(q_lo, q_hi):
                                    gx_row[uint64(position(q, col, sw))] += wv * dy_row[uint64(q)]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _grad_weight(dy, x, dw_out, sd, sh, sw, pd, ph, pw, dd, dh, dw, groups):
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = dw_out.shape
    O, P, Q = dy.shape[2], dy.shape[3], dy.shape[4]
    Kg = K // groups
    for kc in numba.prange(K * Cg):
        k, cl = kc // Cg, kc % Cg
        c = (k // Kg) * Cg + cl
        # partial sums per output column (a vectorisable loop without reassociating a scalar sum),
        # one row per tap; reduced at the end in a fixed order
        acc = _zeros_rows(T * R * S, dy[0, 0, 0, 0])
        for n in range(N):
            xc = x[n, c]
            dyk = dy[n, k]
            for t in range(T):
                for r in range(R):
                    for s in range(S):
                        dep, row, col, o_lo, o_hi, p_lo, p_hi, q_lo, q_hi = _tap_spans(
                            t, r, s, dd, dh, dw, pd, ph, pw, sd, sh, sw, D, H, W, O, P, Q)
                        a = acc[(t * R + r) * S + s]
                        for od in range(o_lo, o_hi):
                            dy_slice, x_slice = dyk[od], xc[position(od, dep, sd)]
                            for p in range(p_lo, p_hi):
                                dy_row = dy_slice[p]
                                x_row = x_slice[position(p, row, sh)]
                                for q in range(q_lo, q_hi):
                                    a[uint64(q)] += dy_row[uint64(q)] * x_row[uint64(position(q, col, sw))]
        taps = dw_out[k, cl].reshape(T * R * S)
        for i in range(T * R * S):
            a = acc[i]
            total = a[0]
            for q in range(1, Q):
                total += a[q]
            taps[i] = total


@numba.njit(parallel=True, cache=True, fastmath=False)
def _grad_bias(dy, db):
    N, K, P, Q = dy.shape
    for k in numba.prange(K):
        acc = _zeros_rows(1, dy[0, 0, 0])[0]  # per-column partial sums, as in _grad_weight
        for n in range(N):
            dyk = dy[n, k]
            for p in range(P):
                dy_row = dyk[p]
                for q in range(Q):
                    acc[uint64(q)] += dy_row[uint64(q)]
        total = acc[0]
        for q in range(1, Q):
            total += acc[q]
        db[k] = total


# --- torch-facing functions: each serves the entry of either rank ------------------------------------------

def _np(t):
    """A numpy view sharing the memory of a contiguous CPU tensor (writes reach the tensor)."""
    return t.detach().numpy()


def _np_volumes(t):
    """_np of a (N, C, [D,] H, W) tensor as (N, C, D, H, W): planes get D = 1."""
    return _np(t).reshape(volume_shape(t.shape))


def _geometry(p):
    p = volume_params(p)
    return (*p.stride, *p.padding, *p.dilation, int(p.groups))


def conv2d_forward(x, weight, bias, out, p):
    w = _np_volumes(weight)
    # without a bias, any 1-D array of the same type stands in (never read), so no second specialisation
    b = w.reshape(-1) if bias is None else _np(bias)
    _forward(_np_volumes(x), w, b, bias is not None, _np_volumes(out), *_geometry(p), p.activation,
             w.dtype.type(p.negative_slope))


def conv2d_grad_input(grad_out, weight, grad_x, p):
    _grad_input(_np_volumes(grad_out), _np_volumes(weight), _np_volumes(grad_x), *_geometry(p))


def conv2d_grad_weight(grad_out, x, grad_w, p):
    _grad_weight(_np_volumes(grad_out), _np_volumes(x), _np_volumes(grad_w), *_geometry(p))


def conv2d_grad_bias(grad_out, grad_b):
    _grad_bias(_np(grad_out), _np(grad_b))


conv3d_forward, conv3d_grad_input, conv3d_grad_weight = conv2d_forward, conv2d_grad_input, conv2d_grad_weight

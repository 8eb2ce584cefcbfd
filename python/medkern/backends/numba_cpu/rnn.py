"""Recurrent family as ``@njit(parallel=True)`` kernels (see backends/CONTRACT.md). Batch rows are
independent through time, so each row runs its whole time loop in one prange iteration."""
from __future__ import annotations

import math

import numba
import numpy as np
import torch


def _np(t: torch.Tensor | None, like: torch.Tensor, ndim: int) -> np.ndarray:
    """A numpy view sharing the tensor's memory, or a one-element stand-in for an absent argument."""
    if t is None:
        return np.zeros((1,) * ndim, dtype=like.detach().numpy().dtype)
    return t.detach().numpy()


def _lengths(lengths, T, B):
    return np.full(B, T, dtype=np.int64) if lengths is None else lengths.numpy()


@numba.njit(inline="always")
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(inline="always")
def _slots(t, reverse):
    return (t + 1, t) if reverse else (t, t + 1)


@numba.njit(inline="always")
def _dot_column(v, m, j, acc):
    """acc + v . m[:, j], summed in index order in acc's type (a float 0.0 start sums in float64)."""
    for i in range(v.shape[0]):
        acc += v[i] * m[i, j]
    return acc


@numba.njit(parallel=True, cache=True)
def _forward(lstm, gx, gx_off, w_hh, b_hh, has_b, w_hr, proj, lengths, out, out_off, hs, cs, gates, save, hraw,
             reverse):
    T, B = gx.shape[0], gx.shape[1]
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    for b in numba.prange(B):
        g = np.empty(GH, dtype=gx.dtype)
        hr = np.empty(H, dtype=gx.dtype)
        for step in range(T):
            t = T - 1 - step if reverse else step
            prev, nxt = _slots(t, reverse)
            if t >= lengths[b]:  # past this row's length: state carried over, output zero
                hs[nxt, b, :] = hs[prev, b, :]
                if lstm:
                    cs[nxt, b, :] = cs[prev, b, :]
                out[t, b, out_off:out_off + P] = 0
                if save:
                    gates[t, b, :] = 0
                    if proj:
                        hraw[t, b, :] = 0
                continue
            for n in range(GH):
                acc = b_hh[n] if has_b else 0.0
                for k in range(P):
                    acc += w_hh[n, k] * hs[prev, b, k]
                g[n] = acc
            if lstm:
                for j in range(H):
                    i = _sigmoid(gx[t, b, gx_off + j] + g[j])
                    f = _sigmoid(gx[t, b, gx_off + H + j] + g[H + j])
                    gg = math.tanh(gx[t, b, gx_off + 2 * H + j] + g[2 * H + j])
                    o = _sigmoid(gx[t, b, gx_off + 3 * H + j] + g[3 * H + j])
                    c = f * cs[prev, b, j] + i * gg
                    cs[nxt, b, j] = c
                    hr[j] = o * math.tanh(c)
                    if save:
                        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = i, f, gg, o
                if proj:
                    for p in range(P):
                        acc = 0.0
                        for j in range(H):
                            acc += w_hr[p, j] * hr[j]
                        hs[nxt, b, p] = acc
                    if save:
                        hraw[t, b, :] = hr
                else:
                    hs[nxt, b, :] = hr
            else:
                for j in range(H):
                    r = _sigmoid(gx[t, b, gx_off + j] + g[j])
                    z = _sigmoid(gx[t, b, gx_off + H + j] + g[H + j])
                    n_ = math.tanh(gx[t, b, gx_off + 2 * H + j] + r * g[2 * H + j])
                    hr[j] = (1.0 - z) * n_ + z * hs[prev, b, j]
                    if save:
                        gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j] = r, z, n_
                        gates[t, b, 3 * H + j] = g[2 * H + j]
                hs[nxt, b, :] = hr
            out[t, b, out_off:out_off + P] = hs[nxt, b, :]


@numba.njit(parallel=True, cache=True)
def _backward(lstm, dout, out_off, dhn, dcn, w_hh, w_hr, proj, lengths, hs, cs, gates, dgx, gx_off, dgh, dhp, dh0,
              dc0, reverse):
    T, B = dout.shape[0], dout.shape[1]
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    for b in numba.prange(B):
        dh = dhn[b, :].copy()
        dc = dcn[b, :].copy() if lstm else np.zeros(1, dtype=dout.dtype)
        draw = np.empty(H, dtype=dout.dtype)
        dg = np.empty(GH, dtype=dout.dtype)
        for step in range(T - 1, -1, -1):
            t = T - 1 - step if reverse else step
            prev, nxt = _slots(t, reverse)
            if t >= lengths[b]:  # past this row's length: no gate gradient, the state gradient passes through
                dgx[t, b, gx_off:gx_off + GH] = 0
                if not lstm:
                    dgh[t, b, :] = 0
                if proj:
                    dhp[t, b, :] = 0
                continue
            for p in range(P):
                dh[p] += dout[t, b, out_off + p]
            if lstm:
                if proj:
                    dhp[t, b, :] = dh
                    for j in range(H):
                        draw[j] = _dot_column(dh, w_hr, j, 0.0)
                else:
                    draw[:] = dh
                for j in range(H):
                    i, f, gg, o = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
                    tc = math.tanh(cs[nxt, b, j])
                    dct = dc[j] + draw[j] * o * (1.0 - tc * tc)
                    dg[j] = dct * gg * i * (1.0 - i)
                    dg[H + j] = dct * cs[prev, b, j] * f * (1.0 - f)
                    dg[2 * H + j] = dct * i * (1.0 - gg * gg)
                    dg[3 * H + j] = draw[j] * tc * o * (1.0 - o)
                    dc[j] = dct * f
                dgx[t, b, gx_off:gx_off + GH] = dg
                for p in range(P):
                    dh[p] = _dot_column(dg, w_hh, p, 0.0)
            else:
                for j in range(H):
                    r, z, n_, hn = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
                    dn = dh[j] * (1.0 - z) * (1.0 - n_ * n_)
                    dz = dh[j] * (hs[prev, b, j] - n_) * z * (1.0 - z)
                    dr = dn * hn * r * (1.0 - r)
                    dgx[t, b, gx_off + j], dgx[t, b, gx_off + H + j], dgx[t, b, gx_off + 2 * H + j] = dr, dz, dn
                    dgh[t, b, j], dgh[t, b, H + j], dgh[t, b, 2 * H + j] = dr, dz, dn * r
                    draw[j] = dh[j] * z
                for p in range(H):
                    dh[p] = _dot_column(dgh[t, b], w_hh, p, draw[p])
        dh0[b, :] = dh
        if lstm:
            dc0[b, :] = dc


def rnn_forward(lstm, gx, gx_offset, w_hh, b_hh, w_hr, lengths, out, out_offset, hs, cs, gates, hraw, reverse):
    T, B = gx.shape[:2]
    _forward(lstm, _np(gx, gx, 3), gx_offset, _np(w_hh, gx, 2), _np(b_hh, gx, 1), b_hh is not None,
             _np(w_hr, gx, 2), w_hr is not None, _lengths(lengths, T, B), _np(out, gx, 3), out_offset,
             _np(hs, gx, 3), _np(cs, gx, 3), _np(gates, gx, 3), gates is not None, _np(hraw, gx, 3), reverse)


def rnn_backward(lstm, grad_out, out_offset, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw, grad_gx,
                 gx_offset, grad_gh, grad_hp, grad_h0, grad_c0, reverse):
    T, B = grad_out.shape[:2]
    g = grad_out
    _backward(lstm, _np(g, g, 3), out_offset, _np(grad_hn, g, 2), _np(grad_cn, g, 2), _np(w_hh, g, 2),
              _np(w_hr, g, 2), w_hr is not None, _lengths(lengths, T, B), _np(hs, g, 3), _np(cs, g, 3),
              _np(gates, g, 3), _np(grad_gx, g, 3), gx_offset, _np(grad_gh, g, 3), _np(grad_hp, g, 3),
              _np(grad_h0, g, 2), _np(grad_c0, g, 2), reverse)

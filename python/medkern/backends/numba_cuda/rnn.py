"""Recurrent family as ``numba.cuda`` kernels (see backends/CONTRACT.md).

A persistent kernel per call: one block per batch row runs the whole time loop (rows are independent
through time), its threads sharing the row's units and meeting at a barrier after each phase of a step.
One launch per layer and direction, no per-step host work. The array-level ``launch_*`` functions also
take numpy arrays, so the kernels run under ``NUMBA_ENABLE_CUDASIM=1`` on the CPU in tests."""
from __future__ import annotations

import math

from numba import cuda

_THREADS = 128


@cuda.jit(device=True, inline=True)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@cuda.jit
def _forward(lstm, gx, gx_off, w_hh, b_hh, has_b, w_hr, proj, lengths, out, out_off, hs, cs, gates, save, hraw,
             reverse):
    T = gx.shape[0]
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    b, tid, nt = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    for step in range(T):
        t = T - 1 - step if reverse else step
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        valid = t < lengths[b]
        for j in range(tid, H, nt):
            if not valid:  # past this row's length: state carried over, output zero
                if lstm:
                    cs[nxt, b, j] = cs[prev, b, j]
                if save:
                    for q in range(4):
                        gates[t, b, q * H + j] = 0.0
                    if proj:
                        hraw[t, b, j] = 0.0
                if not proj:
                    hs[nxt, b, j] = hs[prev, b, j]
                    out[t, b, out_off + j] = 0.0
                continue
            if lstm:
                acc = cuda.local.array(4, dtype=gx.dtype)
                for q in range(4):
                    a = gx[t, b, gx_off + q * H + j]
                    for k in range(P):
                        a += w_hh[q * H + j, k] * hs[prev, b, k]
                    acc[q] = a
                i, f, g, o = _sigmoid(acc[0]), _sigmoid(acc[1]), math.tanh(acc[2]), _sigmoid(acc[3])
                c = f * cs[prev, b, j] + i * g
                cs[nxt, b, j] = c
                h = o * math.tanh(c)
                if save:
                    gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = i, f, g, o
                if proj:
                    hraw[t, b, j] = h
                else:
                    hs[nxt, b, j] = h
                    out[t, b, out_off + j] = h
            else:
                hh = cuda.local.array(3, dtype=gx.dtype)
                for q in range(3):
                    a = b_hh[q * H + j] if has_b else 0.0
                    for k in range(H):
                        a += w_hh[q * H + j, k] * hs[prev, b, k]
                    hh[q] = a
                r = _sigmoid(gx[t, b, gx_off + j] + hh[0])
                z = _sigmoid(gx[t, b, gx_off + H + j] + hh[1])
                n = math.tanh(gx[t, b, gx_off + 2 * H + j] + r * hh[2])
                h = (1.0 - z) * n + z * hs[prev, b, j]
                if save:
                    gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j] = r, z, n, hh[2]
                hs[nxt, b, j] = h
                out[t, b, out_off + j] = h
        cuda.syncthreads()
        if proj:
            for p in range(tid, P, nt):
                if valid:
                    a = 0.0
                    for j in range(H):
                        a += w_hr[p, j] * hraw[t, b, j]
                    hs[nxt, b, p] = a
                    out[t, b, out_off + p] = a
                else:
                    hs[nxt, b, p] = hs[prev, b, p]
                    out[t, b, out_off + p] = 0.0
            cuda.syncthreads()


@cuda.jit
def _backward(lstm, dout, out_off, w_hh, w_hr, proj, lengths, hs, cs, gates, dgx, gx_off, dgh, dhp, dh, dc, reverse):
    """dh / dc hold the incoming final-state gradients and carry the running ones (they end as dh0, dc0)."""
    T = dout.shape[0]
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    b, tid, nt = cuda.blockIdx.x, cuda.threadIdx.x, cuda.blockDim.x
    for step in range(T - 1, -1, -1):
        t = T - 1 - step if reverse else step
        prev, nxt = (t + 1, t) if reverse else (t, t + 1)
        valid = t < lengths[b]
        for j in range(tid, H, nt):
            if not valid:
                for q in range(GH // H):
                    dgx[t, b, gx_off + q * H + j] = 0.0
                    if not lstm:
                        dgh[t, b, q * H + j] = 0.0
                continue
            if lstm:
                if proj:
                    draw = 0.0
                    for p in range(P):
                        draw += (dh[b, p] + dout[t, b, out_off + p]) * w_hr[p, j]
                else:
                    draw = dh[b, j] + dout[t, b, out_off + j]
                i, f, g, o = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
                tc = math.tanh(cs[nxt, b, j])
                dct = dc[b, j] + draw * o * (1.0 - tc * tc)
                dgx[t, b, gx_off + j] = dct * g * i * (1.0 - i)
                dgx[t, b, gx_off + H + j] = dct * cs[prev, b, j] * f * (1.0 - f)
                dgx[t, b, gx_off + 2 * H + j] = dct * i * (1.0 - g * g)
                dgx[t, b, gx_off + 3 * H + j] = draw * tc * o * (1.0 - o)
                dc[b, j] = dct * f
            else:
                d = dh[b, j] + dout[t, b, out_off + j]
                r, z, n, hn = gates[t, b, j], gates[t, b, H + j], gates[t, b, 2 * H + j], gates[t, b, 3 * H + j]
                dn = d * (1.0 - z) * (1.0 - n * n)
                dz = d * (hs[prev, b, j] - n) * z * (1.0 - z)
                dr = dn * hn * r * (1.0 - r)
                dgx[t, b, gx_off + j], dgx[t, b, gx_off + H + j], dgx[t, b, gx_off + 2 * H + j] = dr, dz, dn
                dgh[t, b, j], dgh[t, b, H + j], dgh[t, b, 2 * H + j] = dr, dz, dn * r
        cuda.syncthreads()
        for p in range(tid, P, nt):
            if proj:
                dhp[t, b, p] = dh[b, p] + dout[t, b, out_off + p] if valid else 0.0
            if valid:
                if lstm:
                    a = 0.0
                    for n in range(GH):
                        a += dgx[t, b, gx_off + n] * w_hh[n, p]
                else:
                    a = (dh[b, p] + dout[t, b, out_off + p]) * gates[t, b, H + p]
                    for n in range(GH):
                        a += dgh[t, b, n] * w_hh[n, p]
                dh[b, p] = a
        cuda.syncthreads()


def _threads(n: int) -> int:
    return max(32, min(_THREADS, (n + 31) // 32 * 32))


def launch_forward(lstm, gx, gx_off, w_hh, b_hh, has_b, w_hr, proj, lengths, out, out_off, hs, cs, gates, save, hraw,
                   reverse, stream=0):
    B = gx.shape[1]
    _forward[B, _threads(w_hh.shape[0] // (4 if lstm else 3)), stream](
        lstm, gx, gx_off, w_hh, b_hh, has_b, w_hr, proj, lengths, out, out_off, hs, cs, gates, save, hraw, reverse)


def launch_backward(lstm, dout, out_off, w_hh, w_hr, proj, lengths, hs, cs, gates, dgx, gx_off, dgh, dhp, dh, dc,
                    reverse, stream=0):
    B = dout.shape[1]
    _backward[B, _threads(w_hh.shape[0] // (4 if lstm else 3)), stream](
        lstm, dout, out_off, w_hh, w_hr, proj, lengths, hs, cs, gates, dgx, gx_off, dgh, dhp, dh, dc, reverse)


# --- torch-facing functions ---------------------------------------------------------------------------

def _dev(t, like, ndim):
    import torch

    if t is None:
        t = torch.zeros((1,) * ndim, dtype=like.dtype, device=like.device)
    return cuda.as_cuda_array(t.detach())


def _stream(t):
    import torch

    return cuda.external_stream(torch.cuda.current_stream(t.device).cuda_stream)


def _lengths(lengths, T, B, like):
    import torch

    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=like.device)
    return cuda.as_cuda_array(lengths)


def rnn_forward(lstm, gx, gx_offset, w_hh, b_hh, w_hr, lengths, out, out_offset, hs, cs, gates, hraw, reverse):
    T, B = gx.shape[:2]
    launch_forward(lstm, _dev(gx, gx, 3), gx_offset, _dev(w_hh, gx, 2), _dev(b_hh, gx, 1), b_hh is not None,
                   _dev(w_hr, gx, 2), w_hr is not None, _lengths(lengths, T, B, gx), _dev(out, gx, 3), out_offset,
                   _dev(hs, gx, 3), _dev(cs, gx, 3), _dev(gates, gx, 3), gates is not None,
                   _dev(hraw if hraw is not None or w_hr is None else gx.new_empty(T, B, w_hh.shape[0] // 4), gx, 3),
                   reverse, _stream(gx))


def rnn_backward(lstm, grad_out, out_offset, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw, grad_gx,
                 gx_offset, grad_gh, grad_hp, grad_h0, grad_c0, reverse):
    T, B = grad_out.shape[:2]
    g = grad_out
    grad_h0.copy_(grad_hn)
    if lstm:
        grad_c0.copy_(grad_cn)
    launch_backward(lstm, _dev(g, g, 3), out_offset, _dev(w_hh, g, 2), _dev(w_hr, g, 2), w_hr is not None,
                    _lengths(lengths, T, B, g), _dev(hs, g, 3), _dev(cs, g, 3), _dev(gates, g, 3),
                    _dev(grad_gx, g, 3), gx_offset, _dev(grad_gh, g, 3), _dev(grad_hp, g, 3), _dev(grad_h0, g, 2),
                    _dev(grad_c0, g, 2), reverse, _stream(g))

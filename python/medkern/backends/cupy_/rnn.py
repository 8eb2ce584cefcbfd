"""Recurrent family on CuPy raw kernels (see backends/CONTRACT.md, "Recurrent family").

A persistent kernel per call, independent of medkern's own CUDA code: one block per batch row runs the
whole time loop (rows are independent through time), its threads sharing the row's units and meeting at
a barrier after each phase of a step. Each output element is written by one thread in a fixed order:
deterministic. The source is compiled once per dtype with a ``typedef`` of ``scalar_t`` (see _launch.py).
"""
from __future__ import annotations

import numpy as np
import torch

from ._launch import Kernels, as_cupy, on_torch_stream

SOURCE = r"""
__device__ __forceinline__ scalar_t mk_sigmoid(scalar_t x) { return (scalar_t)1 / ((scalar_t)1 + exp(-x)); }

// gx [T, B, ldgx] from column gx_off; out [T, B, ldo] from column out_off; hs [T+1, B, P]; cs [T+1, B, H];
// gates [T, B, 4H]; hraw [T, B, H]. Slots: forward reads t, writes t+1; reverse reads t+1, writes t.
extern "C" __global__ void medkern_rnn_forward(
    int lstm, const scalar_t* gx, long long ldgx, long long gx_off, const scalar_t* w_hh, const scalar_t* b_hh,
    int has_b, const scalar_t* w_hr, int proj, const long long* lengths, scalar_t* out, long long ldo,
    long long out_off, scalar_t* hs, scalar_t* cs, scalar_t* gates, int save, scalar_t* hraw, long long T,
    long long B, long long H, long long P, int reverse) {
  const long long b = blockIdx.x;
  for (long long step = 0; step < T; ++step) {
    const long long t = reverse ? T - 1 - step : step;
    const long long prev = reverse ? t + 1 : t, nxt = reverse ? t : t + 1;
    const bool valid = t < lengths[b];
    const scalar_t* hp = hs + (prev * B + b) * P;
    scalar_t* hn = hs + (nxt * B + b) * P;
    const scalar_t* x = gx + (t * B + b) * ldgx + gx_off;
    scalar_t* o_row = out + (t * B + b) * ldo + out_off;
    scalar_t* sv = gates + (t * B + b) * 4 * H;
    for (long long j = threadIdx.x; j < H; j += blockDim.x) {
      if (!valid) {  // past this row's length: state carried over, output zero
        if (lstm) cs[(nxt * B + b) * H + j] = cs[(prev * B + b) * H + j];
        if (save) {
          for (int q = 0; q < 4; ++q) sv[q * H + j] = 0;
          if (proj) hraw[(t * B + b) * H + j] = 0;
        }
        if (!proj) { hn[j] = hp[j]; o_row[j] = 0; }
        continue;
      }
      if (lstm) {
        scalar_t acc[4];
        for (int q = 0; q < 4; ++q) {
          scalar_t a = x[q * H + j];
          for (long long k = 0; k < P; ++k) a += w_hh[(q * H + j) * P + k] * hp[k];
          acc[q] = a;
        }
        const scalar_t i = mk_sigmoid(acc[0]), f = mk_sigmoid(acc[1]), g = tanh(acc[2]), o = mk_sigmoid(acc[3]);
        const scalar_t c = f * cs[(prev * B + b) * H + j] + i * g;
        cs[(nxt * B + b) * H + j] = c;
        const scalar_t h = o * tanh(c);
        if (save) { sv[j] = i; sv[H + j] = f; sv[2 * H + j] = g; sv[3 * H + j] = o; }
        if (proj) hraw[(t * B + b) * H + j] = h;
        else { hn[j] = h; o_row[j] = h; }
      } else {
        scalar_t hh[3];
        for (int q = 0; q < 3; ++q) {
          scalar_t a = has_b ? b_hh[q * H + j] : (scalar_t)0;
          for (long long k = 0; k < H; ++k) a += w_hh[(q * H + j) * H + k] * hp[k];
          hh[q] = a;
        }
        const scalar_t r = mk_sigmoid(x[j] + hh[0]), z = mk_sigmoid(x[H + j] + hh[1]);
        const scalar_t n = tanh(x[2 * H + j] + r * hh[2]);
        const scalar_t h = ((scalar_t)1 - z) * n + z * hp[j];
        if (save) { sv[j] = r; sv[H + j] = z; sv[2 * H + j] = n; sv[3 * H + j] = hh[2]; }
        hn[j] = h;
        o_row[j] = h;
      }
    }
    __syncthreads();
    if (proj) {
      for (long long p = threadIdx.x; p < P; p += blockDim.x) {
        scalar_t a = hp[p];
        if (valid) {
          a = 0;
          for (long long j = 0; j < H; ++j) a += w_hr[p * H + j] * hraw[(t * B + b) * H + j];
        }
        hn[p] = a;
        o_row[p] = valid ? a : (scalar_t)0;
      }
      __syncthreads();
    }
  }
}

// dh [B, P] and dc [B, H] come in holding the final states' gradients and carry the running ones.
extern "C" __global__ void medkern_rnn_backward(
    int lstm, const scalar_t* dout, long long ldo, long long out_off, const scalar_t* w_hh, const scalar_t* w_hr,
    int proj, const long long* lengths, const scalar_t* hs, const scalar_t* cs, const scalar_t* gates,
    scalar_t* dgx, long long ldgx, long long gx_off, scalar_t* dgh, scalar_t* dhp, scalar_t* dh, scalar_t* dc,
    long long T, long long B, long long H, long long P, int reverse) {
  const long long b = blockIdx.x, GH = (lstm ? 4 : 3) * H;
  for (long long step = T - 1; step >= 0; --step) {
    const long long t = reverse ? T - 1 - step : step;
    const long long prev = reverse ? t + 1 : t, nxt = reverse ? t : t + 1;
    const bool valid = t < lengths[b];
    const scalar_t* d_out = dout + (t * B + b) * ldo + out_off;
    const scalar_t* sv = gates + (t * B + b) * 4 * H;
    scalar_t* dg = dgx + (t * B + b) * ldgx + gx_off;
    scalar_t* dgr = dgh + (t * B + b) * 3 * H;
    for (long long j = threadIdx.x; j < H; j += blockDim.x) {
      if (!valid) {
        for (int q = 0; q < (lstm ? 4 : 3); ++q) {
          dg[q * H + j] = 0;
          if (!lstm) dgr[q * H + j] = 0;
        }
        continue;
      }
      if (lstm) {
        scalar_t draw = 0;
        if (proj) for (long long p = 0; p < P; ++p) draw += (dh[b * P + p] + d_out[p]) * w_hr[p * H + j];
        else draw = dh[b * P + j] + d_out[j];
        const scalar_t i = sv[j], f = sv[H + j], g = sv[2 * H + j], o = sv[3 * H + j];
        const scalar_t tc = tanh(cs[(nxt * B + b) * H + j]);
        const scalar_t dct = dc[b * H + j] + draw * o * ((scalar_t)1 - tc * tc);
        dg[j] = dct * g * i * ((scalar_t)1 - i);
        dg[H + j] = dct * cs[(prev * B + b) * H + j] * f * ((scalar_t)1 - f);
        dg[2 * H + j] = dct * i * ((scalar_t)1 - g * g);
        dg[3 * H + j] = draw * tc * o * ((scalar_t)1 - o);
        dc[b * H + j] = dct * f;
      } else {
        const scalar_t d = dh[b * H + j] + d_out[j];
        const scalar_t r = sv[j], z = sv[H + j], n = sv[2 * H + j], hn = sv[3 * H + j];
        const scalar_t dn = d * ((scalar_t)1 - z) * ((scalar_t)1 - n * n);
        const scalar_t dz = d * (hs[(prev * B + b) * H + j] - n) * z * ((scalar_t)1 - z);
        const scalar_t dr = dn * hn * r * ((scalar_t)1 - r);
        dg[j] = dr; dg[H + j] = dz; dg[2 * H + j] = dn;
        dgr[j] = dr; dgr[H + j] = dz; dgr[2 * H + j] = dn * r;
      }
    }
    __syncthreads();
    for (long long p = threadIdx.x; p < P; p += blockDim.x) {
      if (proj) dhp[(t * B + b) * P + p] = valid ? dh[b * P + p] + d_out[p] : (scalar_t)0;
      if (!valid) continue;
      scalar_t a = 0;
      if (lstm) {
        for (long long n = 0; n < GH; ++n) a += dg[n] * w_hh[n * P + p];
      } else {
        a = (dh[b * P + p] + d_out[p]) * sv[H + p];
        for (long long n = 0; n < GH; ++n) a += dgr[n] * w_hh[n * P + p];
      }
      dh[b * P + p] = a;
    }
    __syncthreads();
  }
}
"""

KERNELS = ("medkern_rnn_forward", "medkern_rnn_backward")
_KERNELS = Kernels(SOURCE)


def source_for(ctype: str) -> str:
    """The complete CUDA source for one element type, as NVRTC gets it."""
    return _KERNELS.source_for(ctype)


def _threads(H: int) -> int:
    return max(32, min(128, (H + 31) // 32 * 32))


def _arr(t, like):
    return as_cupy(t if t is not None else torch.zeros(1, dtype=like.dtype, device=like.device))


def _lengths(lengths, T, B, like):
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.int64, device=like.device)
    return as_cupy(lengths)


def rnn_forward(lstm, gx, gx_offset, w_hh, b_hh, w_hr, lengths, out, out_offset, hs, cs, gates, hraw, reverse):
    T, B, ldgx = gx.shape
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    if w_hr is not None and hraw is None:  # inference with a projection still needs hraw between phases
        hraw = torch.empty(T, B, H, dtype=gx.dtype, device=gx.device)
    with on_torch_stream(gx):
        _KERNELS.get("medkern_rnn_forward", gx.dtype)(
            (B,), (_threads(H),),
            (np.int32(lstm), as_cupy(gx), np.int64(ldgx), np.int64(gx_offset), as_cupy(w_hh), _arr(b_hh, gx),
             np.int32(b_hh is not None), _arr(w_hr, gx), np.int32(w_hr is not None), _lengths(lengths, T, B, gx),
             as_cupy(out), np.int64(out.shape[2]), np.int64(out_offset), as_cupy(hs), _arr(cs, gx), _arr(gates, gx),
             np.int32(gates is not None), _arr(hraw, gx), np.int64(T), np.int64(B), np.int64(H), np.int64(P),
             np.int32(reverse)))


def rnn_backward(lstm, grad_out, out_offset, grad_hn, grad_cn, w_hh, w_hr, lengths, hs, cs, gates, hraw, grad_gx,
                 gx_offset, grad_gh, grad_hp, grad_h0, grad_c0, reverse):
    T, B, ldo = grad_out.shape
    GH, P = w_hh.shape
    H = GH // (4 if lstm else 3)
    grad_h0.copy_(grad_hn)
    if lstm:
        grad_c0.copy_(grad_cn)
    g = grad_out
    with on_torch_stream(g):
        _KERNELS.get("medkern_rnn_backward", g.dtype)(
            (B,), (_threads(H),),
            (np.int32(lstm), as_cupy(g), np.int64(ldo), np.int64(out_offset), as_cupy(w_hh), _arr(w_hr, g),
             np.int32(w_hr is not None), _lengths(lengths, T, B, g), as_cupy(hs), _arr(cs, g), as_cupy(gates),
             as_cupy(grad_gx), np.int64(grad_gx.shape[2]), np.int64(gx_offset), _arr(grad_gh, g), _arr(grad_hp, g),
             as_cupy(grad_h0), _arr(grad_c0, g), np.int64(T), np.int64(B), np.int64(H), np.int64(P),
             np.int32(reverse)))

"""conv2d and conv3d families on CuPy raw kernels (see backends/CONTRACT.md).

The kernels are written for volumes (N, C, D, H, W); planes run as volumes of depth one
(``backends._volumes``), so each public function serves the entry of either rank. A direct formulation,
one thread per output element for forward, grad-input and grad-weight (each summing its own terms in a
fixed order) and one block per channel for grad-bias (fixed-order tree), so results are deterministic. The CUDA source below is compiled twice, once per dtype, by prefixing a
``typedef`` of ``scalar_t``; :func:`source_for` gives the exact text handed to NVRTC.
"""
from __future__ import annotations

import numpy as np

from .._volumes import volume_params, volume_shape
from ._launch import MAX_BLOCKS, THREADS, Kernels, as_cupy, blocks, on_torch_stream

KERNELS = ("medkern_conv_forward", "medkern_conv_grad_input", "medkern_conv_grad_weight", "medkern_conv2d_grad_bias")
BIAS_THREADS = 256  # must match the shared buffer of medkern_conv2d_grad_bias (a power of two)

# Shapes arrive as long long: products such as N*K*O*P*Q may pass 2^31.
SOURCE = r"""
// Per axis, depth first: input (D, H, W), kernel taps (T, R, S), output (O, P, Q), stride, leading padding,
// dilation.
#define MEDKERN_SHAPE_PARAMS                                                                          \
    long long N, long long C, long long D, long long H, long long W, long long K, long long T, long long R, \
    long long S, long long O, long long P, long long Q, long long sd, long long sh, long long sw,         \
    long long pd, long long ph, long long pw, long long dd, long long dh, long long dw, long long groups

// Grid-stride loop over [0, total): the grid is capped, so one thread may own several elements.
#define MEDKERN_FOR_EACH(i, total)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total);     \
         i += (long long)gridDim.x * blockDim.x)

// out[n,k,o,p,q] = act(bias[k] + sum_{c,t,r,s} x[n, g*Cg + c, o*sd - pd + t*dd, p*sh - ph + r*dh, q*sw - pw + s*dw]
//                                              * w[k,c,t,r,s])
// act: 0 none, 1 relu (relu(-inf) = 0, relu(NaN) = NaN), 2 leaky_relu with slope >= 0.
extern "C" __global__ void medkern_conv_forward(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias,
    int has_bias, scalar_t* __restrict__ y, MEDKERN_SHAPE_PARAMS, int act, scalar_t slope) {
  const long long Cg = C / groups, Kg = K / groups;
  MEDKERN_FOR_EACH(i, N * K * O * P * Q) {
    const long long q = i % Q, p = i / Q % P, o = i / (P * Q) % O, k = i / (O * P * Q) % K, n = i / (K * O * P * Q);
    const long long g = k / Kg;
    const scalar_t* xg = x + (n * C + g * Cg) * D * H * W;
    const scalar_t* wk = w + k * Cg * T * R * S;
    scalar_t acc = has_bias ? bias[k] : (scalar_t)0;
    for (long long c = 0; c < Cg; ++c)
      for (long long t = 0; t < T; ++t) {
        const long long d = o * sd - pd + t * dd;
        if (d < 0 || d >= D) continue;
        for (long long r = 0; r < R; ++r) {
          const long long h = p * sh - ph + r * dh;
          if (h < 0 || h >= H) continue;
          for (long long s = 0; s < S; ++s) {
            const long long v = q * sw - pw + s * dw;
            if (v < 0 || v >= W) continue;
            acc += xg[((c * D + d) * H + h) * W + v] * wk[((c * T + t) * R + r) * S + s];
          }
        }
      }
    y[i] = (act == 0 || !(acc < (scalar_t)0)) ? acc : (act == 1 ? (scalar_t)0 : acc * slope);
  }
}

// The output index j that reads input position i through a tap at offset tap*dil - pad along one axis of
// n outputs: j*stride - pad + tap*dil == i, 0 <= j < n; -1 where there is none.
__device__ __forceinline__ long long medkern_reader(long long i, long long tap, long long stride, long long pad,
                                                    long long dil, long long n) {
  const long long t = i + pad - tap * dil;
  if (t < 0 || t % stride != 0) return -1;
  return t / stride < n ? t / stride : -1;
}

// dx[n, g*Cg + c, d, h, v] = sum over k in group g and taps (t, r, s) whose output position (o, p, q) reads
// (d, h, v). Taps that meet no output add nothing.
extern "C" __global__ void medkern_conv_grad_input(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ w, scalar_t* __restrict__ dx,
    MEDKERN_SHAPE_PARAMS) {
  const long long Cg = C / groups, Kg = K / groups;
  MEDKERN_FOR_EACH(i, N * C * D * H * W) {
    const long long v = i % W, h = i / W % H, d = i / (H * W) % D, c = i / (D * H * W) % C, n = i / (C * D * H * W);
    const long long g = c / Cg, cl = c - g * Cg;
    scalar_t acc = 0;
    for (long long kl = 0; kl < Kg; ++kl) {
      const long long k = g * Kg + kl;
      const scalar_t* dyk = dy + (n * K + k) * O * P * Q;
      const scalar_t* wk = w + (k * Cg + cl) * T * R * S;
      for (long long t = 0; t < T; ++t) {
        const long long o = medkern_reader(d, t, sd, pd, dd, O);
        if (o < 0) continue;
        for (long long r = 0; r < R; ++r) {
          const long long p = medkern_reader(h, r, sh, ph, dh, P);
          if (p < 0) continue;
          for (long long s = 0; s < S; ++s) {
            const long long q = medkern_reader(v, s, sw, pw, dw, Q);
            if (q < 0) continue;
            acc += dyk[(o * P + p) * Q + q] * wk[(t * R + r) * S + s];
          }
        }
      }
    }
    dx[i] = acc;
  }
}

// dw[k, c, t, r, s] = sum_{n,o,p,q} dy[n,k,o,p,q]
//                     * x[n, g*Cg + c, o*sd - pd + t*dd, p*sh - ph + r*dh, q*sw - pw + s*dw]
extern "C" __global__ void medkern_conv_grad_weight(
    const scalar_t* __restrict__ dy, const scalar_t* __restrict__ x, scalar_t* __restrict__ dwt,
    MEDKERN_SHAPE_PARAMS) {
  const long long Cg = C / groups, Kg = K / groups;
  MEDKERN_FOR_EACH(i, K * Cg * T * R * S) {
    const long long s = i % S, r = i / S % R, t = i / (R * S) % T, cl = i / (T * R * S) % Cg,
                    k = i / (Cg * T * R * S);
    const long long c = k / Kg * Cg + cl;
    scalar_t acc = 0;
    for (long long n = 0; n < N; ++n) {
      const scalar_t* dyk = dy + (n * K + k) * O * P * Q;
      const scalar_t* xc = x + (n * C + c) * D * H * W;
      for (long long o = 0; o < O; ++o) {
        const long long d = o * sd - pd + t * dd;
        if (d < 0 || d >= D) continue;
        for (long long p = 0; p < P; ++p) {
          const long long h = p * sh - ph + r * dh;
          if (h < 0 || h >= H) continue;
          for (long long q = 0; q < Q; ++q) {
            const long long v = q * sw - pw + s * dw;
            if (v < 0 || v >= W) continue;
            acc += dyk[(o * P + p) * Q + q] * xc[(d * H + h) * W + v];
          }
        }
      }
    }
    dwt[i] = acc;
  }
}

// db[k] = sum_{n, pq} dy[n, k, pq]: one block per channel (looping when K exceeds the grid); threads
// take a fixed stride of the (n, pq) range, then a shared-memory tree combines them in a fixed order.
// Launched with exactly 256 threads.
extern "C" __global__ void medkern_conv2d_grad_bias(
    const scalar_t* __restrict__ dy, scalar_t* __restrict__ db, long long N, long long K, long long PQ) {
  __shared__ scalar_t part[256];
  const int t = threadIdx.x;
  for (long long k = blockIdx.x; k < K; k += gridDim.x) {
    scalar_t acc = 0;
    for (long long j = t; j < N * PQ; j += blockDim.x) {
      const long long n = j / PQ;
      acc += dy[(n * K + k) * PQ + (j - n * PQ)];
    }
    part[t] = acc;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
      if (t < width) part[t] += part[t + width];
      __syncthreads();
    }
    if (t == 0) db[k] = part[0];
    __syncthreads();  // part[0] is read before the next channel overwrites the buffer
  }
}
"""

_KERNELS = Kernels(SOURCE)
source_for = _KERNELS.source_for


def _shape_args(x_shape, w_shape, out_shape, p):
    N, C, D, H, W = volume_shape(x_shape)
    K, _, T, R, S = volume_shape(w_shape)
    p = volume_params(p)
    return tuple(np.int64(v) for v in (N, C, D, H, W, K, T, R, S, *volume_shape(out_shape)[2:], *p.stride, *p.padding,
                                       *p.dilation, p.groups))


# --- entries: each serves planes and volumes alike ------------------------------------------------------

def conv2d_forward(x, weight, bias, out, p):
    total = out.numel()
    if total == 0:
        return
    with on_torch_stream(x):
        xc = as_cupy(x)
        args = (xc, as_cupy(weight), xc if bias is None else as_cupy(bias), np.int32(bias is not None), as_cupy(out))
        _KERNELS.get("medkern_conv_forward", x.dtype)(
            (blocks(total),), (THREADS,), args + _shape_args(x.shape, weight.shape, out.shape, p)
            + (np.int32(p.activation), xc.dtype.type(p.negative_slope)))


def _launch_gradient(name, grad_out, operand, result, ref, x_shape, w_shape, p):
    """Runs gradient kernel `name` (grad_out, operand -> result), one thread per element of `result`, for
    `ref`'s dtype on torch's current stream of `ref`'s GPU."""
    total = result.numel()
    if total == 0:
        return
    with on_torch_stream(ref):
        args = (as_cupy(grad_out), as_cupy(operand), as_cupy(result))
        _KERNELS.get(name, ref.dtype)(
            (blocks(total),), (THREADS,), args + _shape_args(x_shape, w_shape, grad_out.shape, p))


def conv2d_grad_input(grad_out, weight, grad_x, p):
    _launch_gradient("medkern_conv_grad_input", grad_out, weight, grad_x, grad_x, grad_x.shape, weight.shape, p)


def conv2d_grad_weight(grad_out, x, grad_w, p):
    _launch_gradient("medkern_conv_grad_weight", grad_out, x, grad_w, x, x.shape, grad_w.shape, p)


def conv2d_grad_bias(grad_out, grad_b):
    N, K, P, Q = grad_out.shape
    if K == 0:
        return
    with on_torch_stream(grad_out):
        _KERNELS.get("medkern_conv2d_grad_bias", grad_out.dtype)(
            (min(K, MAX_BLOCKS),), (BIAS_THREADS,),
            (as_cupy(grad_out), as_cupy(grad_b), np.int64(N), np.int64(K), np.int64(P * Q)))


conv3d_forward, conv3d_grad_input, conv3d_grad_weight = conv2d_forward, conv2d_grad_input, conv2d_grad_weight

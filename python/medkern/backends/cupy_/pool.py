"""Pooling family on CuPy raw kernels (see backends/CONTRACT.md, "Pooling family").

A direct formulation, independent of medkern's own CUDA code. The forwards run one thread per output
element, scanning the window in torch's row-major order (which the max tie/NaN rule depends on). The
backward of average and adaptive-average pooling runs one thread per *input* element, gathering from the
outputs whose windows contain it in a fixed order: deterministic, no atomics. The max backward (indices
carry no geometry) zeroes grad_x and scatters with atomicAdd, so where windows overlap its float sums are
not bitwise reproducible from run to run; out-of-range indices are skipped and counted, and the call
then raises ValueError.

As in conv.py, the CUDA source is compiled once per dtype by prefixing a ``typedef`` of ``scalar_t``;
:func:`source_for` gives the exact text handed to NVRTC.
"""
from __future__ import annotations

import numpy as np
import torch

from ._launch import THREADS, Kernels, as_cupy, blocks, on_torch_stream

KERNELS = ("medkern_max_pool2d_forward", "medkern_max_pool2d_scatter", "medkern_avg_pool2d_forward",
           "medkern_avg_pool2d_backward", "medkern_adaptive_avg_pool2d_forward",
           "medkern_adaptive_avg_pool2d_backward", "medkern_adaptive_max_pool2d_forward")

# Sizes arrive as long long: products such as planes*P*Q may pass 2^31.
SOURCE = r"""
// planes = N*C independent planes of H x W (input) and P x Q (output).
#define MEDKERN_POOL_PLANES long long planes, long long H, long long W, long long P, long long Q
#define MEDKERN_POOL_WINDOW long long kh, long long kw, long long sh, long long sw, long long ph, long long pw

// Grid-stride loop over [0, total): the grid is capped, so one thread may own several elements.
#define MEDKERN_FOR_EACH(i, total)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total);     \
         i += (long long)gridDim.x * blockDim.x)

// The element of flat index i: its plane and position, and that plane of the array it reads (x for an
// output element, dy for an input element).
#define MEDKERN_OUTPUT_ELEMENT(i)                                        \
    const long long ow = i % Q, oh = i / Q % P, plane = i / (P * Q);     \
    const scalar_t* xp = x + plane * H * W
#define MEDKERN_INPUT_ELEMENT(i)                                         \
    const long long iw = i % W, ih = i / W % H, plane = i / (H * W);     \
    const scalar_t* g = dy + plane * P * Q

// torch's max rule: a larger value, or any NaN, replaces the running maximum; in row-major order the
// first of tied maxima and the last NaN win.
__device__ __forceinline__ bool medkern_replaces(scalar_t v, scalar_t m) { return v > m || v != v; }

__device__ __forceinline__ scalar_t medkern_neg_inf() { return (scalar_t)(-__int_as_float(0x7f800000)); }

// Taps of a window starting at `start`, spaced d apart, k of them: the first at a non-negative position
// (where torch starts its max index, even when no tap is inside) and one past the last inside [0, n).
__device__ __forceinline__ long long medkern_first_tap(long long start, long long d) {
  return start < 0 ? (-start + d - 1) / d : 0;
}
__device__ __forceinline__ long long medkern_tap_end(long long start, long long k, long long d, long long n) {
  if (start >= n) return 0;
  const long long e = (n - 1 - start) / d + 1;
  return e < k ? e : k;
}

// torch's average-pooling divisor along one axis: the window clipped to the padded input
// (include_pad) or to the input itself.
__device__ __forceinline__ long long medkern_axis_count(long long o, long long size, long long k, long long stride,
                                                        long long pad, int include_pad) {
  long long a = o * stride - pad;
  long long b = a + k < size + pad ? a + k : size + pad;
  if (include_pad) return b - a;
  a = a > 0 ? a : 0;
  b = b < size ? b : size;
  return b - a;
}

// Adaptive window [start, end) of output i along an axis of input n and output m.
__device__ __forceinline__ long long medkern_adaptive_start(long long i, long long n, long long m) {
  return (i * n) / m;
}
__device__ __forceinline__ long long medkern_adaptive_end(long long i, long long n, long long m) {
  return ((i + 1) * n + m - 1) / m;
}

extern "C" __global__ void medkern_max_pool2d_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, long long* __restrict__ indices, int with_indices,
    MEDKERN_POOL_PLANES, MEDKERN_POOL_WINDOW, long long dh, long long dw) {
  MEDKERN_FOR_EACH(i, planes * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long h_start = oh * sh - ph, w_start = ow * sw - pw;
    const long long r0 = medkern_first_tap(h_start, dh), r1 = medkern_tap_end(h_start, kh, dh, H);
    const long long c0 = medkern_first_tap(w_start, dw), c1 = medkern_tap_end(w_start, kw, dw, W);
    scalar_t m = medkern_neg_inf();
    long long best = (h_start + r0 * dh) * W + (w_start + c0 * dw);
    for (long long r = r0; r < r1; ++r) {
      const long long ih = h_start + r * dh;
      for (long long c = c0; c < c1; ++c) {
        const long long iw = w_start + c * dw;
        const scalar_t v = xp[ih * W + iw];
        if (medkern_replaces(v, m)) {
          m = v;
          best = ih * W + iw;
        }
      }
    }
    y[i] = m;
    if (with_indices) indices[i] = best;
  }
}

// dx[plane, indices[i]] += dy[i] (dx zeroed beforehand); indices outside [0, H*W) are counted in *bad.
extern "C" __global__ void medkern_max_pool2d_scatter(
    const scalar_t* __restrict__ dy, const long long* __restrict__ indices, scalar_t* __restrict__ dx,
    long long total, long long PQ, long long HW, unsigned long long* __restrict__ bad) {
  MEDKERN_FOR_EACH(i, total) {
    const long long k = indices[i];
    if (k >= 0 && k < HW) atomicAdd(dx + (i / PQ) * HW + k, dy[i]);
    else atomicAdd(bad, 1ull);
  }
}

// divisor: divisor_override, or 0 for torch's per-window count.
extern "C" __global__ void medkern_avg_pool2d_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, MEDKERN_POOL_PLANES, MEDKERN_POOL_WINDOW,
    int include_pad, long long divisor) {
  MEDKERN_FOR_EACH(i, planes * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long ha = oh * sh - ph, wa = ow * sw - pw;
    const long long h0 = ha > 0 ? ha : 0, h1 = ha + kh < H ? ha + kh : H;
    const long long w0 = wa > 0 ? wa : 0, w1 = wa + kw < W ? wa + kw : W;
    scalar_t sum = 0;
    for (long long ih = h0; ih < h1; ++ih)
      for (long long iw = w0; iw < w1; ++iw) sum += xp[ih * W + iw];
    const long long d = divisor != 0 ? divisor
        : medkern_axis_count(oh, H, kh, sh, ph, include_pad) * medkern_axis_count(ow, W, kw, sw, pw, include_pad);
    y[i] = sum / (scalar_t)d;
  }
}

// dx[ih, iw] = sum of dy[oh, ow] / divisor(oh, ow) over the windows [o*s - p, o*s - p + k) holding the
// element: along one axis o in [ceil((i + p - k + 1) / s), floor((i + p) / s)] within [0, out). i + p >= 0
// makes the floor a plain division; a non-positive ceil argument clips to 0.
extern "C" __global__ void medkern_avg_pool2d_backward(
    const scalar_t* __restrict__ dy, scalar_t* __restrict__ dx, MEDKERN_POOL_PLANES, MEDKERN_POOL_WINDOW,
    int include_pad, long long divisor) {
  MEDKERN_FOR_EACH(i, planes * H * W) {
    MEDKERN_INPUT_ELEMENT(i);
    const long long lo_h = ih + ph - kh + 1, lo_w = iw + pw - kw + 1;
    const long long oh0 = lo_h > 0 ? (lo_h + sh - 1) / sh : 0, ow0 = lo_w > 0 ? (lo_w + sw - 1) / sw : 0;
    const long long oh1 = (ih + ph) / sh + 1 < P ? (ih + ph) / sh + 1 : P;
    const long long ow1 = (iw + pw) / sw + 1 < Q ? (iw + pw) / sw + 1 : Q;
    scalar_t sum = 0;
    for (long long oh = oh0; oh < oh1; ++oh) {
      const long long rows = divisor != 0 ? 1 : medkern_axis_count(oh, H, kh, sh, ph, include_pad);
      for (long long ow = ow0; ow < ow1; ++ow) {
        const long long d = divisor != 0 ? divisor : rows * medkern_axis_count(ow, W, kw, sw, pw, include_pad);
        sum += g[oh * Q + ow] / (scalar_t)d;
      }
    }
    dx[i] = sum;
  }
}

extern "C" __global__ void medkern_adaptive_avg_pool2d_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, MEDKERN_POOL_PLANES) {
  MEDKERN_FOR_EACH(i, planes * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long h0 = medkern_adaptive_start(oh, H, P), h1 = medkern_adaptive_end(oh, H, P);
    const long long w0 = medkern_adaptive_start(ow, W, Q), w1 = medkern_adaptive_end(ow, W, Q);
    scalar_t sum = 0;
    for (long long ih = h0; ih < h1; ++ih)
      for (long long iw = w0; iw < w1; ++iw) sum += xp[ih * W + iw];
    y[i] = sum / (scalar_t)((h1 - h0) * (w1 - w0));
  }
}

// The windows holding input i along an axis of input n and output m are o in [floor(i*m/n), ceil((i+1)*m/n));
// containment is still checked against the windows themselves (their sizes are needed anyway).
extern "C" __global__ void medkern_adaptive_avg_pool2d_backward(
    const scalar_t* __restrict__ dy, scalar_t* __restrict__ dx, MEDKERN_POOL_PLANES) {
  MEDKERN_FOR_EACH(i, planes * H * W) {
    MEDKERN_INPUT_ELEMENT(i);
    const long long oh0 = (ih * P) / H, oh1e = ((ih + 1) * P + H - 1) / H, oh1 = oh1e < P ? oh1e : P;
    const long long ow0 = (iw * Q) / W, ow1e = ((iw + 1) * Q + W - 1) / W, ow1 = ow1e < Q ? ow1e : Q;
    scalar_t sum = 0;
    for (long long oh = oh0; oh < oh1; ++oh) {
      const long long h0 = medkern_adaptive_start(oh, H, P), h1 = medkern_adaptive_end(oh, H, P);
      if (ih < h0 || ih >= h1) continue;
      for (long long ow = ow0; ow < ow1; ++ow) {
        const long long w0 = medkern_adaptive_start(ow, W, Q), w1 = medkern_adaptive_end(ow, W, Q);
        if (iw < w0 || iw >= w1) continue;
        sum += g[oh * Q + ow] / (scalar_t)((h1 - h0) * (w1 - w0));
      }
    }
    dx[i] = sum;
  }
}

extern "C" __global__ void medkern_adaptive_max_pool2d_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, long long* __restrict__ indices, MEDKERN_POOL_PLANES) {
  MEDKERN_FOR_EACH(i, planes * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long h0 = medkern_adaptive_start(oh, H, P), h1 = medkern_adaptive_end(oh, H, P);
    const long long w0 = medkern_adaptive_start(ow, W, Q), w1 = medkern_adaptive_end(ow, W, Q);
    scalar_t m = medkern_neg_inf();
    long long best = h0 * W + w0;
    for (long long ih = h0; ih < h1; ++ih)
      for (long long iw = w0; iw < w1; ++iw) {
        const scalar_t v = xp[ih * W + iw];
        if (medkern_replaces(v, m)) {
          m = v;
          best = ih * W + iw;
        }
      }
    y[i] = m;
    indices[i] = best;
  }
}
"""

_KERNELS = Kernels(SOURCE)
source_for = _KERNELS.source_for


def _planes_args(x_shape, out_hw):
    N, C, H, W = x_shape
    P, Q = out_hw
    return tuple(np.int64(v) for v in (N * C, H, W, P, Q))


def _window_args(p):
    (kh, kw), (sh, sw), (ph, pw) = p.kernel, p.stride, p.padding
    return tuple(np.int64(v) for v in (kh, kw, sh, sw, ph, pw))


def _launch(name, ref, total, args):
    """Runs kernel `name` for `ref`'s dtype over `total` elements on torch's current stream of `ref`'s GPU."""
    if total == 0:
        return
    with on_torch_stream(ref):
        cupy_args = tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
        _KERNELS.get(name, ref.dtype)((blocks(total),), (THREADS,), cupy_args)


def max_pool2d_forward(x, out, indices, p):
    with_indices = indices is not None
    dh, dw = p.dilation
    # Without indices the kernel never touches the pointer; `out` stands in for it.
    _launch("medkern_max_pool2d_forward", x, out.numel(),
            (x, out, indices if with_indices else out, np.int32(with_indices))
            + _planes_args(x.shape, out.shape[2:]) + _window_args(p) + (np.int64(dh), np.int64(dw)))


def max_pool2d_backward(grad_out, indices, grad_x):
    import cupy

    N, C, H, W = grad_x.shape
    P, Q = grad_out.shape[2:]
    total = grad_out.numel()
    with on_torch_stream(grad_x):
        dx = as_cupy(grad_x)
        dx.fill(0)
        if total == 0:
            return
        bad = cupy.zeros(1, dtype=cupy.uint64)
        _KERNELS.get("medkern_max_pool2d_scatter", grad_x.dtype)(
            (blocks(total),), (THREADS,),
            (as_cupy(grad_out), as_cupy(indices), dx, np.int64(total), np.int64(P * Q), np.int64(H * W), bad))
        n_bad = int(bad.get()[0])  # copies on the current (torch's) stream and waits for it
    if n_bad:
        raise ValueError(f"indices: {n_bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    _launch("medkern_avg_pool2d_forward", x, out.numel(),
            (x, out) + _planes_args(x.shape, out.shape[2:]) + _window_args(p)
            + (np.int32(bool(count_include_pad)), np.int64(divisor_override or 0)))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _launch("medkern_avg_pool2d_backward", grad_x, grad_x.numel(),
            (grad_out, grad_x) + _planes_args(grad_x.shape, grad_out.shape[2:]) + _window_args(p)
            + (np.int32(bool(count_include_pad)), np.int64(divisor_override or 0)))


def adaptive_avg_pool2d_forward(x, out):
    _launch("medkern_adaptive_avg_pool2d_forward", x, out.numel(), (x, out) + _planes_args(x.shape, out.shape[2:]))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    _launch("medkern_adaptive_avg_pool2d_backward", grad_x, grad_x.numel(),
            (grad_out, grad_x) + _planes_args(grad_x.shape, grad_out.shape[2:]))


def adaptive_max_pool2d_forward(x, out, indices):
    _launch("medkern_adaptive_max_pool2d_forward", x, out.numel(),
            (x, out, indices) + _planes_args(x.shape, out.shape[2:]))

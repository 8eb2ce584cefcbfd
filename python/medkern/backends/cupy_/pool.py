"""Pooling family on CuPy raw kernels (see backends/CONTRACT.md, "Pooling family").

A direct formulation, independent of medkern's own CUDA code. The forwards run one thread per output
element, scanning the window in torch's row-major order (which the max tie/NaN rule depends on). The
backward of average and adaptive-average pooling runs one thread per *input* element, gathering from the
outputs whose windows contain it in a fixed order: deterministic, no atomics. The max backward (indices
carry no geometry) zeroes grad_x and scatters with atomicAdd, so where windows overlap its float sums are
not bitwise reproducible from run to run; out-of-range indices are skipped and counted, and the call
then raises ValueError. The kernels are written for volumes; planes run as volumes of depth one
(``backends._volumes``), so each public function serves an entry of either rank.

As in conv.py, the CUDA source is compiled once per dtype by prefixing a ``typedef`` of ``scalar_t``;
:func:`source_for` gives the exact text handed to NVRTC.
"""
from __future__ import annotations

import numpy as np
import torch

from .._volumes import pool_window, volume_shape
from ._launch import THREADS, Kernels, as_cupy, blocks, on_torch_stream

KERNELS = ("medkern_max_pool_forward", "medkern_max_pool_scatter", "medkern_avg_pool_forward",
           "medkern_avg_pool_backward", "medkern_adaptive_avg_pool_forward", "medkern_adaptive_avg_pool_backward",
           "medkern_adaptive_max_pool_forward")

# Sizes arrive as long long: products such as volumes*O*P*Q may pass 2^31.
SOURCE = r"""
// volumes = N*C independent volumes of D x H x W (input) and O x P x Q (output); planes are volumes of
// depth one. Per axis, depth first: kernel (kd, kh, kw), stride (sd, sh, sw), leading padding (pd, ph, pw).
#define MEDKERN_POOL_VOLUMES \
    long long volumes, long long D, long long H, long long W, long long O, long long P, long long Q
#define MEDKERN_POOL_WINDOW                                                                          \
    long long kd, long long kh, long long kw, long long sd, long long sh, long long sw, long long pd, \
    long long ph, long long pw

// Grid-stride loop over [0, total): the grid is capped, so one thread may own several elements.
#define MEDKERN_FOR_EACH(i, total)                                                          \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total);     \
         i += (long long)gridDim.x * blockDim.x)

// The element of flat index i: its volume and position, and that volume of the array it reads (x for an
// output element, dy for an input element).
#define MEDKERN_OUTPUT_ELEMENT(i)                                                                     \
    const long long ow = i % Q, oh = i / Q % P, od = i / (P * Q) % O, vol = i / (O * P * Q);         \
    const scalar_t* xv = x + vol * D * H * W
#define MEDKERN_INPUT_ELEMENT(i)                                                                      \
    const long long iw = i % W, ih = i / W % H, id = i / (H * W) % D, vol = i / (D * H * W);         \
    const scalar_t* g = dy + vol * O * P * Q

// torch's max rule: a larger value, or any NaN, replaces the running maximum; in index order the first
// of tied maxima and the last NaN win.
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

struct medkern_range {
  long long lo, hi;
};

// The outputs [lo, hi) whose windows [o*s - p, o*s - p + k) hold input i along an axis of n outputs:
// o in [ceil((i + p - k + 1) / s), floor((i + p) / s)] within [0, n). i + p >= 0 makes the floor a plain
// division; a non-positive ceil argument clips to 0.
__device__ __forceinline__ medkern_range medkern_windows_holding(long long i, long long k, long long s, long long p,
                                                                 long long n) {
  const long long lo = i + p - k + 1, hi = (i + p) / s + 1;
  return {lo > 0 ? (lo + s - 1) / s : 0, hi < n ? hi : n};
}

// Adaptive window [start, end) of output o along an axis of input n and output m.
__device__ __forceinline__ medkern_range medkern_adaptive_window(long long o, long long n, long long m) {
  return {(o * n) / m, ((o + 1) * n + m - 1) / m};
}

// The adaptive windows that may hold input i along an axis of input n and output m: o in
// [floor(i*m/n), ceil((i+1)*m/n)) within [0, m); containment is still checked against the windows.
__device__ __forceinline__ medkern_range medkern_adaptive_holding(long long i, long long n, long long m) {
  const long long hi = ((i + 1) * m + n - 1) / n;
  return {(i * m) / n, hi < m ? hi : m};
}

extern "C" __global__ void medkern_max_pool_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, long long* __restrict__ indices, int with_indices,
    MEDKERN_POOL_VOLUMES, MEDKERN_POOL_WINDOW, long long dd, long long dh, long long dw) {
  MEDKERN_FOR_EACH(i, volumes * O * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long d_start = od * sd - pd, h_start = oh * sh - ph, w_start = ow * sw - pw;
    const long long t0 = medkern_first_tap(d_start, dd), t1 = medkern_tap_end(d_start, kd, dd, D);
    const long long r0 = medkern_first_tap(h_start, dh), r1 = medkern_tap_end(h_start, kh, dh, H);
    const long long c0 = medkern_first_tap(w_start, dw), c1 = medkern_tap_end(w_start, kw, dw, W);
    scalar_t m = medkern_neg_inf();
    long long best = ((d_start + t0 * dd) * H + (h_start + r0 * dh)) * W + (w_start + c0 * dw);
    for (long long t = t0; t < t1; ++t) {
      const long long id = d_start + t * dd;
      for (long long r = r0; r < r1; ++r) {
        const long long ih = h_start + r * dh;
        for (long long c = c0; c < c1; ++c) {
          const long long k = (id * H + ih) * W + w_start + c * dw;
          const scalar_t v = xv[k];
          if (medkern_replaces(v, m)) {
            m = v;
            best = k;
          }
        }
      }
    }
    y[i] = m;
    if (with_indices) indices[i] = best;
  }
}

// dx[plane, indices[i]] += dy[i] (dx zeroed beforehand); indices outside [0, n_in) are counted in *bad.
extern "C" __global__ void medkern_max_pool_scatter(
    const scalar_t* __restrict__ dy, const long long* __restrict__ indices, scalar_t* __restrict__ dx,
    long long total, long long n_out, long long n_in, unsigned long long* __restrict__ bad) {
  MEDKERN_FOR_EACH(i, total) {
    const long long k = indices[i];
    if (k >= 0 && k < n_in) atomicAdd(dx + (i / n_out) * n_in + k, dy[i]);
    else atomicAdd(bad, 1ull);
  }
}

// divisor: divisor_override, or 0 for torch's per-window count.
extern "C" __global__ void medkern_avg_pool_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, MEDKERN_POOL_VOLUMES, MEDKERN_POOL_WINDOW,
    int include_pad, long long divisor) {
  MEDKERN_FOR_EACH(i, volumes * O * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const long long da = od * sd - pd, ha = oh * sh - ph, wa = ow * sw - pw;
    const long long d0 = da > 0 ? da : 0, d1 = da + kd < D ? da + kd : D;
    const long long h0 = ha > 0 ? ha : 0, h1 = ha + kh < H ? ha + kh : H;
    const long long w0 = wa > 0 ? wa : 0, w1 = wa + kw < W ? wa + kw : W;
    scalar_t sum = 0;
    for (long long id = d0; id < d1; ++id)
      for (long long ih = h0; ih < h1; ++ih)
        for (long long iw = w0; iw < w1; ++iw) sum += xv[(id * H + ih) * W + iw];
    const long long n = divisor != 0 ? divisor
        : medkern_axis_count(od, D, kd, sd, pd, include_pad) * medkern_axis_count(oh, H, kh, sh, ph, include_pad)
          * medkern_axis_count(ow, W, kw, sw, pw, include_pad);
    y[i] = sum / (scalar_t)n;
  }
}

// dx[id, ih, iw] = sum of dy[od, oh, ow] / divisor(od, oh, ow) over the windows holding the element.
extern "C" __global__ void medkern_avg_pool_backward(
    const scalar_t* __restrict__ dy, scalar_t* __restrict__ dx, MEDKERN_POOL_VOLUMES, MEDKERN_POOL_WINDOW,
    int include_pad, long long divisor) {
  MEDKERN_FOR_EACH(i, volumes * D * H * W) {
    MEDKERN_INPUT_ELEMENT(i);
    const medkern_range ds = medkern_windows_holding(id, kd, sd, pd, O);
    const medkern_range hs = medkern_windows_holding(ih, kh, sh, ph, P);
    const medkern_range ws = medkern_windows_holding(iw, kw, sw, pw, Q);
    scalar_t sum = 0;
    for (long long od = ds.lo; od < ds.hi; ++od) {
      const long long n_d = divisor != 0 ? 1 : medkern_axis_count(od, D, kd, sd, pd, include_pad);
      for (long long oh = hs.lo; oh < hs.hi; ++oh) {
        const long long n_dh = divisor != 0 ? 1 : n_d * medkern_axis_count(oh, H, kh, sh, ph, include_pad);
        for (long long ow = ws.lo; ow < ws.hi; ++ow) {
          const long long n = divisor != 0 ? divisor : n_dh * medkern_axis_count(ow, W, kw, sw, pw, include_pad);
          sum += g[(od * P + oh) * Q + ow] / (scalar_t)n;
        }
      }
    }
    dx[i] = sum;
  }
}

extern "C" __global__ void medkern_adaptive_avg_pool_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, MEDKERN_POOL_VOLUMES) {
  MEDKERN_FOR_EACH(i, volumes * O * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const medkern_range dr = medkern_adaptive_window(od, D, O), hr = medkern_adaptive_window(oh, H, P),
                        wr = medkern_adaptive_window(ow, W, Q);
    scalar_t sum = 0;
    for (long long id = dr.lo; id < dr.hi; ++id)
      for (long long ih = hr.lo; ih < hr.hi; ++ih)
        for (long long iw = wr.lo; iw < wr.hi; ++iw) sum += xv[(id * H + ih) * W + iw];
    y[i] = sum / (scalar_t)((dr.hi - dr.lo) * (hr.hi - hr.lo) * (wr.hi - wr.lo));
  }
}

extern "C" __global__ void medkern_adaptive_avg_pool_backward(
    const scalar_t* __restrict__ dy, scalar_t* __restrict__ dx, MEDKERN_POOL_VOLUMES) {
  MEDKERN_FOR_EACH(i, volumes * D * H * W) {
    MEDKERN_INPUT_ELEMENT(i);
    const medkern_range ds = medkern_adaptive_holding(id, D, O), hs = medkern_adaptive_holding(ih, H, P),
                        ws = medkern_adaptive_holding(iw, W, Q);
    scalar_t sum = 0;
    for (long long od = ds.lo; od < ds.hi; ++od) {
      const medkern_range dr = medkern_adaptive_window(od, D, O);
      if (id < dr.lo || id >= dr.hi) continue;
      for (long long oh = hs.lo; oh < hs.hi; ++oh) {
        const medkern_range hr = medkern_adaptive_window(oh, H, P);
        if (ih < hr.lo || ih >= hr.hi) continue;
        for (long long ow = ws.lo; ow < ws.hi; ++ow) {
          const medkern_range wr = medkern_adaptive_window(ow, W, Q);
          if (iw < wr.lo || iw >= wr.hi) continue;
          sum += g[(od * P + oh) * Q + ow] / (scalar_t)((dr.hi - dr.lo) * (hr.hi - hr.lo) * (wr.hi - wr.lo));
        }
      }
    }
    dx[i] = sum;
  }
}

extern "C" __global__ void medkern_adaptive_max_pool_forward(
    const scalar_t* __restrict__ x, scalar_t* __restrict__ y, long long* __restrict__ indices,
    MEDKERN_POOL_VOLUMES) {
  MEDKERN_FOR_EACH(i, volumes * O * P * Q) {
    MEDKERN_OUTPUT_ELEMENT(i);
    const medkern_range dr = medkern_adaptive_window(od, D, O), hr = medkern_adaptive_window(oh, H, P),
                        wr = medkern_adaptive_window(ow, W, Q);
    scalar_t m = medkern_neg_inf();
    long long best = (dr.lo * H + hr.lo) * W + wr.lo;
    for (long long id = dr.lo; id < dr.hi; ++id)
      for (long long ih = hr.lo; ih < hr.hi; ++ih)
        for (long long iw = wr.lo; iw < wr.hi; ++iw) {
          const long long k = (id * H + ih) * W + iw;
          const scalar_t v = xv[k];
          if (medkern_replaces(v, m)) {
            m = v;
            best = k;
          }
        }
    y[i] = m;
    indices[i] = best;
  }
}
"""

_KERNELS = Kernels(SOURCE)
source_for = _KERNELS.source_for


def _int64s(values) -> tuple:
    return tuple(np.int64(v) for v in values)


def _volumes_args(x_shape, out_shape):
    """volumes, D, H, W, O, P, Q: planes as volumes of depth one."""
    N, C, D, H, W = volume_shape(x_shape)
    return _int64s((N * C, D, H, W, *volume_shape(out_shape)[2:]))


def _launch(name, ref, total, args):
    """Runs kernel `name` for `ref`'s dtype over `total` elements on torch's current stream of `ref`'s GPU."""
    if total == 0:
        return
    with on_torch_stream(ref):
        cupy_args = tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
        _KERNELS.get(name, ref.dtype)((blocks(total),), (THREADS,), cupy_args)


# --- entries: each serves planes and volumes alike ------------------------------------------------------

def max_pool2d_forward(x, out, indices, p):
    with_indices = indices is not None
    # Without indices the kernel never touches the pointer; `out` stands in for it.
    _launch("medkern_max_pool_forward", x, out.numel(),
            (x, out, indices if with_indices else out, np.int32(with_indices)) + _volumes_args(x.shape, out.shape)
            + _int64s(pool_window(p.kernel, p.stride, p.padding, p.dilation)))


def max_pool2d_backward(grad_out, indices, grad_x):
    import cupy

    total = grad_out.numel()
    with on_torch_stream(grad_x):
        dx = as_cupy(grad_x)
        dx.fill(0)
        if total == 0:
            return
        planes = grad_x.shape[0] * grad_x.shape[1]
        bad = cupy.zeros(1, dtype=cupy.uint64)
        _KERNELS.get("medkern_max_pool_scatter", grad_x.dtype)(
            (blocks(total),), (THREADS,),
            (as_cupy(grad_out), as_cupy(indices), dx) + _int64s((total, total // planes, grad_x.numel() // planes))
            + (bad,))
        n_bad = int(bad.get()[0])  # copies on the current (torch's) stream and waits for it
    if n_bad:
        raise ValueError(f"indices: {n_bad} value(s) outside [0, H*W) of the input plane")


def avg_pool2d_forward(x, out, p, count_include_pad, divisor_override):
    _launch("medkern_avg_pool_forward", x, out.numel(),
            (x, out) + _volumes_args(x.shape, out.shape) + _int64s(pool_window(p.kernel, p.stride, p.padding))
            + (np.int32(bool(count_include_pad)), np.int64(divisor_override or 0)))


def avg_pool2d_backward(grad_out, grad_x, p, count_include_pad, divisor_override):
    _launch("medkern_avg_pool_backward", grad_x, grad_x.numel(),
            (grad_out, grad_x) + _volumes_args(grad_x.shape, grad_out.shape)
            + _int64s(pool_window(p.kernel, p.stride, p.padding))
            + (np.int32(bool(count_include_pad)), np.int64(divisor_override or 0)))


def adaptive_avg_pool2d_forward(x, out):
    _launch("medkern_adaptive_avg_pool_forward", x, out.numel(), (x, out) + _volumes_args(x.shape, out.shape))


def adaptive_avg_pool2d_backward(grad_out, grad_x):
    _launch("medkern_adaptive_avg_pool_backward", grad_x, grad_x.numel(),
            (grad_out, grad_x) + _volumes_args(grad_x.shape, grad_out.shape))


def adaptive_max_pool2d_forward(x, out, indices):
    _launch("medkern_adaptive_max_pool_forward", x, out.numel(),
            (x, out, indices) + _volumes_args(x.shape, out.shape))


# The volume entries: the functions above, which take either rank.
max_pool3d_forward = max_pool2d_forward
avg_pool3d_forward = avg_pool2d_forward
avg_pool3d_backward = avg_pool2d_backward
adaptive_avg_pool3d_forward = adaptive_avg_pool2d_forward
adaptive_avg_pool3d_backward = adaptive_avg_pool2d_backward
adaptive_max_pool3d_forward = adaptive_max_pool2d_forward

// Pooling on CUDA. Pooling moves little arithmetic per byte, so the kernels are direct formulations that
// aim at coalesced access and no redundant passes:
//   forwards (max, average, adaptive)     one thread per output element, scanning its window in torch's
//                                          order (row-major; the max tie/NaN rule depends on it)
//   average / adaptive-average backward   one thread per *input* element, gathering from the outputs
//                                          whose windows contain it: no atomics, a fixed summation order
//   max backward                          dx = 0, then one thread per output element scatters its gradient
//                                          to the stored index with atomicAdd (indices carry no geometry)
// Every kernel is a grid-stride loop over a flat (plane, row, column) range with 64-bit positions; the
// flat index is split with 32-bit division whenever the whole range fits in 32 bits (integer division is
// slow on GPUs, 64-bit doubly so, and it is most of a small window's cost).
//
// The module is compiled with --use_fast_math, which would change torch's semantics in two places, so
// both are pinned down explicitly: divisions use the IEEE round-to-nearest intrinsics (fast math makes
// float `/` approximate), and the float max comparison is written in PTX without .ftz (fast math flushes
// subnormal operands of comparisons to zero, which would let 0 tie with a subnormal maximum). What
// remains of fast math is the flushing of subnormal float sums and quotients in the average kernels:
// results below 2^-126 in magnitude may come out as zero where torch keeps them.
#include "pool2d.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = (int64_t(1) << 31) - 1;  // gridDim.x limit; kernels loop past it
constexpr int64_t kMax32 = int64_t(UINT32_MAX);

// The device-only pieces have host twins, so the per-element functors below also run on the host (a
// test harness can include this file and check the index arithmetic against torch without a GPU).
// MEDKERN_DEVICE_OR_HOST(d, h) is the expression d in device code and h in host code.
#if defined(__CUDA_ARCH__)
#define MEDKERN_DEVICE_OR_HOST(device, host) (device)
#else
#define MEDKERN_DEVICE_OR_HOST(device, host) (host)
#endif

template <typename T>
__host__ __device__ __forceinline__ T load(const T* p) { return MEDKERN_DEVICE_OR_HOST(__ldg(p), *p); }

// a / b rounded to nearest, whatever -prec-div says.
__host__ __device__ __forceinline__ float div_rn(float a, float b) {
  return MEDKERN_DEVICE_OR_HOST(__fdiv_rn(a, b), a / b);
}
__host__ __device__ __forceinline__ double div_rn(double a, double b) {
  return MEDKERN_DEVICE_OR_HOST(__ddiv_rn(a, b), a / b);
}

// torch's max rule: a larger value, or any NaN, replaces the running maximum. Scanning a window in
// row-major order therefore keeps the first of tied maxima and the last NaN.
__host__ __device__ __forceinline__ bool replaces(float v, float m) {
#if defined(__CUDA_ARCH__)
  // setp without .ftz: a subnormal v must beat 0 as in torch, even under -ftz=true.
  unsigned r;
  asm("{\n\t"
      ".reg .pred p_gt, p_nan;\n\t"
      "setp.gt.f32 p_gt, %1, %2;\n\t"
      "setp.nan.f32 p_nan, %1, %1;\n\t"
      "or.pred p_gt, p_gt, p_nan;\n\t"
      "selp.u32 %0, 1, 0, p_gt;\n\t"
      "}"
      : "=r"(r)
      : "f"(v), "f"(m));
  return r != 0;
#else
  return v > m || v != v;
#endif
}
__host__ __device__ __forceinline__ bool replaces(double v, double m) { return v > m || v != v; }

// Flat index t of a planes x rows x cols range -> (plane, row, col). k32: t < 2^32 (so rows, cols too).
template <bool k32>
__host__ __device__ __forceinline__ void split_flat(int64_t t, int64_t rows, int64_t cols, int64_t& plane,
                                                    int64_t& r, int64_t& c) {
  if constexpr (k32) {
    const uint32_t u = uint32_t(t), ur = uint32_t(rows), uc = uint32_t(cols);
    const uint32_t q = u / uc, p = q / ur;
    c = u - q * uc;
    r = q - p * ur;
    plane = p;
  } else {
    const int64_t q = t / cols;
    c = t - q * cols;
    plane = q / rows;
    r = q - plane * rows;
  }
}

// The taps [first, end) of a window that starts at `start` with k taps spaced d apart which fall inside
// [0, n). `first` is also where torch's max pooling starts its index (the first non-negative position),
// even in the degenerate case of no tap inside (first >= end), where torch reports it all the same.
struct TapRange { int64_t first, end; };
__host__ __device__ __forceinline__ TapRange taps_in_range(int64_t start, int64_t k, int64_t d, int64_t n) {
  TapRange t{0, 0};
  if (start < 0) t.first = d == 1 ? -start : (-start + d - 1) / d;
  if (start < n) {
    t.end = d == 1 ? n - start : (n - 1 - start) / d + 1;
    if (t.end > k) t.end = k;
  }
  return t;
}

__host__ __device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
__host__ __device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------------
// Per-element functors: operator()(t, plane, row, col) computes flat element t = (plane, row, col) of
// the launch's range (the output for forwards, the input for the gathering backwards).
// ---------------------------------------------------------------------------------------------------

template <typename T>
struct MaxForward {
  Pool2dShape s;
  const T* __restrict__ x;
  T* __restrict__ y;
  int64_t* __restrict__ indices;  // may be nullptr

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t oh, int64_t ow) const {
    const T* __restrict__ xp = x + plane * s.H * s.W;
    const int64_t h_start = oh * s.sh - s.ph, w_start = ow * s.sw - s.pw;
    const TapRange rows = taps_in_range(h_start, s.kh, s.dh, s.H);
    const TapRange cols = taps_in_range(w_start, s.kw, s.dw, s.W);
    T m = T(-INFINITY);
    int64_t best = (h_start + rows.first * s.dh) * s.W + (w_start + cols.first * s.dw);
    for (int64_t i = rows.first; i < rows.end; ++i) {
      const int64_t ih = h_start + i * s.dh;
      const T* __restrict__ row = xp + ih * s.W;
      for (int64_t j = cols.first; j < cols.end; ++j) {
        const int64_t iw = w_start + j * s.dw;
        const T v = load(row + iw);
        if (replaces(v, m)) {
          m = v;
          best = ih * s.W + iw;
        }
      }
    }
    y[t] = m;
    if (indices != nullptr) indices[t] = best;
  }
};

template <typename T>
struct AvgForward {
  Pool2dShape s;
  const T* __restrict__ x;
  T* __restrict__ y;

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t oh, int64_t ow) const {
    const T* __restrict__ xp = x + plane * s.H * s.W;
    const int64_t ha = oh * s.sh - s.ph, wa = ow * s.sw - s.pw;
    const int64_t h0 = imax(ha, 0), h1 = imin(ha + s.kh, s.H);
    const int64_t w0 = imax(wa, 0), w1 = imin(wa + s.kw, s.W);
    T sum = T(0);
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += load(xp + ih * s.W + iw);
    y[t] = div_rn(sum, T(avg_pool_divisor(s, oh, ow)));
  }
};

// dx[ih, iw] = sum over the outputs (oh, ow) whose window [o*s - p, o*s - p + k) contains (ih, iw) of
// dy[oh, ow] / divisor(oh, ow), in row-major output order (torch's order, so also its float result).
// Along one axis those outputs are o in [ceil((i + p - k + 1) / s), floor((i + p) / s)] within [0, out):
// i + p >= 0 makes the floor a plain division; a non-positive ceil argument clips to 0.
template <typename T>
struct AvgBackward {
  Pool2dShape s;
  const T* __restrict__ dy;
  T* __restrict__ dx;

  __host__ __device__ __forceinline__ static void outputs_reading(int64_t i, int64_t k, int64_t stride, int64_t pad,
                                                                  int64_t out, int64_t& o0, int64_t& o1) {
    const int64_t lo = i + pad - k + 1;
    o0 = lo > 0 ? ceil_div(lo, stride) : 0;
    o1 = imin((i + pad) / stride + 1, out);
  }

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t ih, int64_t iw) const {
    const T* __restrict__ g = dy + plane * s.P * s.Q;
    int64_t oh0, oh1, ow0, ow1;
    outputs_reading(ih, s.kh, s.sh, s.ph, s.P, oh0, oh1);
    outputs_reading(iw, s.kw, s.sw, s.pw, s.Q, ow0, ow1);
    T sum = T(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t rows = s.divisor_override ? 1 : avg_pool_axis_count(oh, s.H, s.kh, s.sh, s.ph, s.count_include_pad);
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t d = s.divisor_override
                              ? s.divisor_override
                              : rows * avg_pool_axis_count(ow, s.W, s.kw, s.sw, s.pw, s.count_include_pad);
        sum += div_rn(load(g + oh * s.Q + ow), T(d));
      }
    }
    dx[t] = sum;
  }
};

template <typename T>
struct AdaptiveAvgForward {
  Pool2dShape s;
  const T* __restrict__ x;
  T* __restrict__ y;

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t oh, int64_t ow) const {
    const T* __restrict__ xp = x + plane * s.H * s.W;
    const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
    const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
    T sum = T(0);
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += load(xp + ih * s.W + iw);
    y[t] = div_rn(sum, T((h1 - h0) * (w1 - w0)));
  }
};

// The outputs whose adaptive window contains input i along an axis of input n and output m:
// floor(o*n/m) <= i < ceil((o+1)*n/m) holds exactly for o in [floor(i*m/n), ceil((i+1)*m/n)); the
// kernel still checks containment with the windows themselves (it needs their sizes anyway).
template <typename T>
struct AdaptiveAvgBackward {
  Pool2dShape s;
  const T* __restrict__ dy;
  T* __restrict__ dx;

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t ih, int64_t iw) const {
    const T* __restrict__ g = dy + plane * s.P * s.Q;
    const int64_t oh0 = (ih * s.P) / s.H, oh1 = imin(ceil_div((ih + 1) * s.P, s.H), s.P);
    const int64_t ow0 = (iw * s.Q) / s.W, ow1 = imin(ceil_div((iw + 1) * s.Q, s.W), s.Q);
    T sum = T(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
      if (ih < h0 || ih >= h1) continue;
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
        if (iw < w0 || iw >= w1) continue;
        sum += div_rn(load(g + oh * s.Q + ow), T((h1 - h0) * (w1 - w0)));
      }
    }
    dx[t] = sum;
  }
};

template <typename T>
struct AdaptiveMaxForward {
  Pool2dShape s;
  const T* __restrict__ x;
  T* __restrict__ y;
  int64_t* __restrict__ indices;

  __host__ __device__ __forceinline__ void operator()(int64_t t, int64_t plane, int64_t oh, int64_t ow) const {
    const T* __restrict__ xp = x + plane * s.H * s.W;
    const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
    const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
    T m = T(-INFINITY);
    int64_t best = h0 * s.W + w0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) {
        const T v = load(xp + ih * s.W + iw);
        if (replaces(v, m)) {
          m = v;
          best = ih * s.W + iw;
        }
      }
    y[t] = m;
    indices[t] = best;
  }
};

// ---------------------------------------------------------------------------------------------------
// Kernels and launches.
// ---------------------------------------------------------------------------------------------------

template <class F, bool k32>
__global__ void __launch_bounds__(kThreads) for_each_kernel(const F f, int64_t total, int64_t rows, int64_t cols) {
  for (int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x; t < total; t += int64_t(gridDim.x) * kThreads) {
    int64_t plane, r, c;
    split_flat<k32>(t, rows, cols, plane, r, c);
    f(t, plane, r, c);
  }
}

// Scatters dy[t] to dx[plane(t), indices[t]]; counts (and skips) indices outside [0, HW).
template <typename T, bool k32>
__global__ void __launch_bounds__(kThreads)
    max_backward_scatter_kernel(const T* __restrict__ dy, const int64_t* __restrict__ indices, T* __restrict__ dx,
                                int64_t total, int64_t PQ, int64_t HW, unsigned long long* __restrict__ bad) {
  for (int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x; t < total; t += int64_t(gridDim.x) * kThreads) {
    const int64_t k = __ldg(indices + t);
    if (uint64_t(k) < uint64_t(HW)) {
      const int64_t plane = k32 ? int64_t(uint32_t(t) / uint32_t(PQ)) : t / PQ;
      atomicAdd(dx + plane * HW + k, __ldg(dy + t));
    } else {
      atomicAdd(bad, 1ull);
    }
  }
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so that later calls start clean
    throw std::runtime_error(std::string("medkern ") + what + ": " + cudaGetErrorString(err));
  }
}

void check_launch(const char* what) { check(cudaGetLastError(), what); }

int64_t blocks_for(int64_t total) { return std::min(ceil_div(total, kThreads), kMaxBlocks); }

// Runs f over the flat range planes x rows x cols on `stream`; nothing to do launches nothing.
template <class F>
void launch(const F& f, int64_t planes, int64_t rows, int64_t cols, intptr_t stream, const char* what) {
  const int64_t total = planes * rows * cols;
  if (total <= 0) return;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const unsigned blocks = unsigned(blocks_for(total));
  if (total <= kMax32) for_each_kernel<F, true><<<blocks, kThreads, 0, st>>>(f, total, rows, cols);
  else for_each_kernel<F, false><<<blocks, kThreads, 0, st>>>(f, total, rows, cols);
  check_launch(what);
}

// A stream-ordered device allocation, freed after the work queued before it, also when a call throws.
struct StreamBuffer {
  void* ptr = nullptr;
  cudaStream_t stream = nullptr;
  StreamBuffer(size_t bytes, cudaStream_t st, const char* what) : stream(st) {
    check(cudaMallocAsync(&ptr, bytes, st), what);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (ptr != nullptr) cudaFreeAsync(ptr, stream);
  }
};

}  // namespace

template <typename T>
void max_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(MaxForward<T>{a.s, a.x, a.y, a.indices}, a.s.planes, a.s.P, a.s.Q, stream, "max_pool2d_forward");
}

template <typename T>
int64_t max_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream) {
  constexpr const char* what = "max_pool2d_backward";
  const Pool2dShape& s = a.s;
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const int64_t HW = s.H * s.W, PQ = s.P * s.Q, total = s.planes * PQ;
  if (s.planes * HW > 0) check(cudaMemsetAsync(a.dx, 0, size_t(s.planes * HW) * sizeof(T), st), what);
  if (total <= 0) return 0;
  StreamBuffer bad(sizeof(unsigned long long), st, what);
  check(cudaMemsetAsync(bad.ptr, 0, sizeof(unsigned long long), st), what);
  auto* counter = static_cast<unsigned long long*>(bad.ptr);
  const unsigned blocks = unsigned(blocks_for(total));
  if (total <= kMax32)
    max_backward_scatter_kernel<T, true><<<blocks, kThreads, 0, st>>>(a.dy, a.indices_in, a.dx, total, PQ, HW,
                                                                      counter);
  else
    max_backward_scatter_kernel<T, false><<<blocks, kThreads, 0, st>>>(a.dy, a.indices_in, a.dx, total, PQ, HW,
                                                                       counter);
  check_launch(what);
  unsigned long long n_bad = 0;
  check(cudaMemcpyAsync(&n_bad, counter, sizeof(n_bad), cudaMemcpyDeviceToHost, st), what);
  check(cudaStreamSynchronize(st), what);
  return int64_t(n_bad);
}

template <typename T>
void avg_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(AvgForward<T>{a.s, a.x, a.y}, a.s.planes, a.s.P, a.s.Q, stream, "avg_pool2d_forward");
}

template <typename T>
void avg_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(AvgBackward<T>{a.s, a.dy, a.dx}, a.s.planes, a.s.H, a.s.W, stream, "avg_pool2d_backward");
}

template <typename T>
void adaptive_avg_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(AdaptiveAvgForward<T>{a.s, a.x, a.y}, a.s.planes, a.s.P, a.s.Q, stream, "adaptive_avg_pool2d_forward");
}

template <typename T>
void adaptive_avg_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(AdaptiveAvgBackward<T>{a.s, a.dy, a.dx}, a.s.planes, a.s.H, a.s.W, stream, "adaptive_avg_pool2d_backward");
}

template <typename T>
void adaptive_max_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream) {
  launch(AdaptiveMaxForward<T>{a.s, a.x, a.y, a.indices}, a.s.planes, a.s.P, a.s.Q, stream,
         "adaptive_max_pool2d_forward");
}

#define MEDKERN_INSTANTIATE(T)                                                         \
  template void max_pool2d_forward<T>(const Pool2dArgs<T>&, intptr_t);                 \
  template int64_t max_pool2d_backward<T>(const Pool2dArgs<T>&, intptr_t);             \
  template void avg_pool2d_forward<T>(const Pool2dArgs<T>&, intptr_t);                 \
  template void avg_pool2d_backward<T>(const Pool2dArgs<T>&, intptr_t);                \
  template void adaptive_avg_pool2d_forward<T>(const Pool2dArgs<T>&, intptr_t);        \
  template void adaptive_avg_pool2d_backward<T>(const Pool2dArgs<T>&, intptr_t);       \
  template void adaptive_max_pool2d_forward<T>(const Pool2dArgs<T>&, intptr_t);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE
#undef MEDKERN_DEVICE_OR_HOST

}  // namespace medkern::cuda

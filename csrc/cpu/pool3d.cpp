// Pooling over volumes on the CPU. Each axis's windows are tabulated once per call (first in-range coordinate,
// step, in-range taps), so the loops over a window run over in-range taps only, with no bounds checks; rows are
// contiguous in the input, so the innermost loop reads unit-stride where the dilation is 1.
#include "pool3d.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "threading.h"

namespace medkern::cpu {
namespace {

// The in-range taps of one output's window along one axis: coordinates first, first + step, ...
struct AxisWindow {
  int64_t first, step, count;
  int64_t divisor_count;  // avg pooling's per-axis count (torch's rule), or the window size (adaptive)
};

// Fixed windows: taps t in [0, k) read start + t*d with start = o*s - p. Like torch, `first` is the first tap
// at or past 0, even where no tap is in range (then count is 0).
std::vector<AxisWindow> fixed_windows(const Pool3dShape& s, int axis) {
  const int64_t n = s.in[axis], k = s.k[axis], st = s.s[axis], pad = s.p[axis], dil = s.d[axis];
  std::vector<AxisWindow> w(s.out[axis]);
  for (int64_t o = 0; o < s.out[axis]; ++o) {
    const int64_t start = o * st - pad;
    const int64_t t_lo = start < 0 ? (-start + dil - 1) / dil : 0;
    const int64_t first = start + t_lo * dil;
    const int64_t t_hi = first >= n ? t_lo : std::min(k, (n - 1 - start) / dil + 1);
    w[o] = {first, dil, std::max<int64_t>(0, t_hi - t_lo),
            avg_pool_axis_count(o, n, k, st, pad, s.count_include_pad)};
  }
  return w;
}

std::vector<AxisWindow> adaptive_windows(const Pool3dShape& s, int axis) {
  std::vector<AxisWindow> w(s.out[axis]);
  for (int64_t o = 0; o < s.out[axis]; ++o) {
    const int64_t a = adaptive_start(o, s.in[axis], s.out[axis]), b = adaptive_end(o, s.in[axis], s.out[axis]);
    w[o] = {a, 1, b - a, b - a};
  }
  return w;
}

struct Windows {
  std::vector<AxisWindow> axis[3];
};

Windows fixed(const Pool3dShape& s) { return {{fixed_windows(s, 0), fixed_windows(s, 1), fixed_windows(s, 2)}}; }
Windows adaptive(const Pool3dShape& s) {
  return {{adaptive_windows(s, 0), adaptive_windows(s, 1), adaptive_windows(s, 2)}};
}

// Calls fn(volume, depth, row, values, at) for every row of outputs, threads over the rows; values and at are
// the thread's room for a row's running values and indices (out[2] each).
template <typename T, class Fn>
void for_each_output_row(const Pool3dShape& s, int64_t work_per_output, Fn&& fn) {
  const int64_t O = s.out[0], P = s.out[1], Q = s.out[2], rows = s.volumes * O * P;
#pragma omp parallel num_threads(threads_for(s.volumes * s.out_volume() * work_per_output))
  {
    std::vector<T> values(Q);
    std::vector<int64_t> at(Q);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) fn(r / (O * P), r / P % O, r % P, values.data(), at.data());
  }
}

// Calls fn(row) with the input offset of each in-range row of the window (d, h), depth outermost; the row's
// taps are row, row + ww.step, ... (ww.count of them).
template <class Fn>
inline void for_each_row(const Pool3dShape& s, const AxisWindow& wd, const AxisWindow& wh, const AxisWindow& ww,
                         Fn&& fn) {
  const int64_t H = s.in[1], W = s.in[2];
  for (int64_t a = 0; a < wd.count; ++a) {
    const int64_t id = wd.first + a * wd.step;
    for (int64_t b = 0; b < wh.count; ++b) fn((id * H + wh.first + b * wh.step) * W + ww.first);
  }
}

// Calls fn(i) with each in-range input offset of the window, in torch's scan order (depth, rows, columns).
template <class Fn>
inline void for_each_tap(const Pool3dShape& s, const AxisWindow& wd, const AxisWindow& wh, const AxisWindow& ww,
                         Fn&& fn) {
  for_each_row(s, wd, wh, ww, [&](int64_t row) {
    for (int64_t c = 0; c < ww.count; ++c) fn(row + c * ww.step);
  });
}

// The sum of a window's row of n taps `step` apart. Unit-stride rows (average pooling's) are summed in vector
// lanes: a different order from one running sum, as torch's vectorised kernels' is too.
template <typename T>
inline T row_sum(const T* x, int64_t n, int64_t step) {
  T sum = T(0);
  if (step == 1) {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < n; ++c) sum += x[c];
    return sum;
  }
  for (int64_t c = 0; c < n; ++c) sum += x[c * step];
  return sum;
}

// The sum over one window. Where its rows are whole input rows, consecutive ones are one contiguous run (an
// adaptive or global pooling's large windows: a few long sums instead of many short ones).
template <typename T>
T window_sum(const Pool3dShape& s, const T* x, const AxisWindow& wd, const AxisWindow& wh, const AxisWindow& ww) {
  const int64_t H = s.in[1], W = s.in[2];
  T sum = T(0);
  if (ww.step == 1 && ww.count == W && wh.step == 1) {
    if (wh.count == H && wd.step == 1) return row_sum(x + wd.first * H * W, wd.count * H * W, int64_t(1));
    for (int64_t a = 0; a < wd.count; ++a)
      sum += row_sum(x + ((wd.first + a * wd.step) * H + wh.first) * W, wh.count * W, int64_t(1));
    return sum;
  }
  for_each_row(s, wd, wh, ww, [&](int64_t row) { sum += row_sum(x + row, ww.count, ww.step); });
  return sum;
}

int64_t taps(const Pool3dShape& s) { return s.k[0] * s.k[1] * s.k[2]; }

// The output columns [lo, hi) of a row whose windows hold all k taps along the row (a contiguous range: the
// windows move one way); empty for adaptive windows (k = 0).
std::pair<int64_t, int64_t> full_columns(const std::vector<AxisWindow>& ww, int64_t k) {
  int64_t lo = 0;
  while (lo < int64_t(ww.size()) && ww[lo].count != k) ++lo;
  int64_t hi = lo;
  while (hi < int64_t(ww.size()) && ww[hi].count == k) ++hi;
  return {lo, hi};
}

// fn(offset) for each tap of the windows of a row of outputs, in torch's scan order (depth, rows, columns), where
// every output column ow in [lo, hi) (full_columns) reads input offset + ow * s.s[2].
template <class Fn>
inline void for_each_row_tap(const Pool3dShape& s, const AxisWindow& wd, const AxisWindow& wh, Fn&& fn) {
  const int64_t H = s.in[1], W = s.in[2];
  for (int64_t a = 0; a < wd.count; ++a)
    for (int64_t b = 0; b < wh.count; ++b) {
      const int64_t row = ((wd.first + a * wd.step) * H + wh.first + b * wh.step) * W - s.p[2];
      for (int64_t c = 0; c < s.k[2]; ++c) fn(row + c * s.d[2]);
    }
}

// body(stride) with the usual strides 1 and 2 as compile-time constants: the loops over a row's columns then
// vectorise with unit-stride or two-way interleaved loads.
template <class Body>
inline void with_row_stride(int64_t stride, Body&& body) {
  if (stride == 1) body(std::integral_constant<int64_t, 1>{});
  else if (stride == 2) body(std::integral_constant<int64_t, 2>{});
  else body(stride);
}

// torch's rule: a larger value, or any NaN, replaces the running maximum; the index starts at the window's
// first position (in range or not, as torch's). Whole columns of a row run together (the same comparisons per
// output, in the same order), the rest one output at a time.
template <typename T>
void max_over_windows(const Pool3dArgs<T>& a, const Windows& w, int64_t k, int64_t work) {
  const Pool3dShape& s = a.s;
  const int64_t H = s.in[1], W = s.in[2], DHW = s.in_volume(), Q = s.out[2], OPQ = s.out_volume();
  const auto [lo, hi] = full_columns(w.axis[2], k);
  for_each_output_row<T>(s, work, [&](int64_t v, int64_t od, int64_t oh, T* m, int64_t* at) {
    const T* x = a.x + v * DHW;
    const AxisWindow &wd = w.axis[0][od], &wh = w.axis[1][oh];
    const int64_t corner = (wd.first * H + wh.first) * W, out = v * OPQ + (od * s.out[1] + oh) * Q;
    for (int64_t ow = 0; ow < Q; ++ow) {
      m[ow] = -std::numeric_limits<T>::infinity();
      at[ow] = corner + w.axis[2][ow].first;
    }
    if (lo < hi) with_row_stride(s.s[2], [&](auto S) {
      const int64_t stride = S;
      const int64_t first = lo, last = hi;  // (locals: the loop's bounds are then known not to alias m and at)
      for_each_row_tap(s, wd, wh, [&](int64_t offset) {
        const T* src = x + offset;
#pragma omp simd
        for (int64_t ow = first; ow < last; ++ow) {
          const T value = src[ow * stride];
          const bool take = value > m[ow] || value != value;
          m[ow] = take ? value : m[ow];
          at[ow] = take ? offset + ow * stride : at[ow];
        }
      });
    });
    auto one_output = [&](int64_t ow) {  // a window cut by the row's edges, or an adaptive one
      for_each_tap(s, wd, wh, w.axis[2][ow], [&](int64_t i) {
        const T value = x[i];
        if (value > m[ow] || value != value) m[ow] = value, at[ow] = i;
      });
    };
    for (int64_t ow = 0; ow < lo; ++ow) one_output(ow);
    for (int64_t ow = hi; ow < Q; ++ow) one_output(ow);
    std::copy(m, m + Q, a.y + out);
    if (a.indices) std::copy(at, at + Q, a.indices + out);
  });
}

template <typename T>
void average_over_windows(const Pool3dArgs<T>& a, const Windows& w, int64_t k, bool use_override, int64_t work) {
  const Pool3dShape& s = a.s;
  const int64_t DHW = s.in_volume(), Q = s.out[2], OPQ = s.out_volume();
  const auto [lo, hi] = full_columns(w.axis[2], k);
  for_each_output_row<T>(s, work, [&](int64_t v, int64_t od, int64_t oh, T* sum, int64_t*) {
    const T* x = a.x + v * DHW;
    const AxisWindow &wd = w.axis[0][od], &wh = w.axis[1][oh];
    std::fill(sum + lo, sum + hi, T(0));
    if (lo < hi) with_row_stride(s.s[2], [&](auto S) {
      const int64_t stride = S;
      const int64_t first = lo, last = hi;
      for_each_row_tap(s, wd, wh, [&](int64_t offset) {
        const T* src = x + offset;
#pragma omp simd
        for (int64_t ow = first; ow < last; ++ow) sum[ow] += src[ow * stride];
      });
    });
    T* y = a.y + v * OPQ + (od * s.out[1] + oh) * Q;
    for (int64_t ow = 0; ow < Q; ++ow) {
      const AxisWindow& ww = w.axis[2][ow];
      const T total = ow >= lo && ow < hi ? sum[ow] : window_sum(s, x, wd, wh, ww);
      const int64_t divisor =
          use_override ? s.divisor_override : wd.divisor_count * wh.divisor_count * ww.divisor_count;
      y[ow] = total / T(divisor);
    }
  });
}

// The adjoint of average_over_windows: windows overlap, so a thread owns whole volumes of dx.
template <typename T>
void average_backward_over_windows(const Pool3dArgs<T>& a, const Windows& w, bool use_override) {
  const Pool3dShape& s = a.s;
  const int64_t DHW = s.in_volume(), O = s.out[0], P = s.out[1], Q = s.out[2], OPQ = s.out_volume();
#pragma omp parallel for schedule(static) num_threads(threads_for(s.volumes * (DHW + OPQ * taps(s))))
  for (int64_t v = 0; v < s.volumes; ++v) {
    T* dx = a.dx + v * DHW;
    const T* dy = a.dy + v * OPQ;
    std::fill(dx, dx + DHW, T(0));
    for (int64_t od = 0; od < O; ++od)
      for (int64_t oh = 0; oh < P; ++oh)
        for (int64_t ow = 0; ow < Q; ++ow) {
          const AxisWindow &wd = w.axis[0][od], &wh = w.axis[1][oh], &ww = w.axis[2][ow];
          const int64_t divisor =
              use_override ? s.divisor_override : wd.divisor_count * wh.divisor_count * ww.divisor_count;
          const T g = dy[(od * P + oh) * Q + ow] / T(divisor);
          for_each_tap(s, wd, wh, ww, [&](int64_t i) { dx[i] += g; });
        }
  }
}

// Adaptive windows hold about in/out elements per axis.
int64_t adaptive_work(const Pool3dShape& s) {
  int64_t work = 1;
  for (int i = 0; i < 3; ++i) work *= (s.in[i] + s.out[i] - 1) / s.out[i] + 1;
  return work;
}

}  // namespace

template <typename T>
void max_pool3d_forward(const Pool3dArgs<T>& a) {
  max_over_windows(a, fixed(a.s), a.s.k[2], taps(a.s));
}

template <typename T>
void avg_pool3d_forward(const Pool3dArgs<T>& a) {
  average_over_windows(a, fixed(a.s), a.s.k[2], a.s.divisor_override != 0, taps(a.s));
}

template <typename T>
void avg_pool3d_backward(const Pool3dArgs<T>& a) {
  average_backward_over_windows(a, fixed(a.s), a.s.divisor_override != 0);
}

template <typename T>
void adaptive_avg_pool3d_forward(const Pool3dArgs<T>& a) {
  average_over_windows(a, adaptive(a.s), 0, false, adaptive_work(a.s));
}

template <typename T>
void adaptive_avg_pool3d_backward(const Pool3dArgs<T>& a) {
  average_backward_over_windows(a, adaptive(a.s), false);
}

template <typename T>
void adaptive_max_pool3d_forward(const Pool3dArgs<T>& a) {
  max_over_windows(a, adaptive(a.s), 0, adaptive_work(a.s));
}

#define MEDKERN_INSTANTIATE(T)                                          \
  template void max_pool3d_forward<T>(const Pool3dArgs<T>&);           \
  template void avg_pool3d_forward<T>(const Pool3dArgs<T>&);           \
  template void avg_pool3d_backward<T>(const Pool3dArgs<T>&);          \
  template void adaptive_avg_pool3d_forward<T>(const Pool3dArgs<T>&);  \
  template void adaptive_avg_pool3d_backward<T>(const Pool3dArgs<T>&); \
  template void adaptive_max_pool3d_forward<T>(const Pool3dArgs<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

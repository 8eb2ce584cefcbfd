// Pooling on the CPU. Each output row is built from whole input rows: an input row (or, where the
// winner's position is not needed, the window's rows combined column by column) is padded with the
// reduction's identity and split into `stride` phases, so every kernel tap is a contiguous shifted read
// and the inner loops are branch-free, unit-stride and vectorise; the input is read about once, which
// is what makes pooling bandwidth-bound.
#include "pool2d.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"  // Buffer, alloc_buffer, ceil_div
#include "simd.h"

namespace medkern::cpu {
namespace {

inline bool worth_threading(int64_t elements) { return elements >= (int64_t(1) << 15); }

// torch's rule: a larger value, or any NaN, replaces the running maximum. Scanning the window in
// row-major order therefore keeps the first of tied maxima and the last NaN, as torch does.
template <typename T>
inline bool replaces(T v, T m) { return v > m || v != v; }

// Reductions over a window that do not need to know which element won (max values, sums) are
// separable: first combine the window's rows column by column (contiguous, vectorised), then combine
// columns. For the second step the combined row is padded with the identity and split into `stride`
// phases (phase r holds columns r, r+stride, ...), after which every kernel tap is a contiguous,
// shifted read of one phase: no strided loads, no bounds checks.
struct MaxOp {
  template <typename T> static T identity() { return -std::numeric_limits<T>::infinity(); }
  template <typename T> static T combine(T acc, T v) { return replaces(v, acc) ? v : acc; }
  template <typename V> static V combine_vec(V acc, V v) { return ((v > acc) | (v != v)) ? v : acc; }
};
struct SumOp {
  template <typename T> static T identity() { return T(0); }
  template <typename T> static T combine(T acc, T v) { return acc + v; }
  template <typename V> static V combine_vec(V acc, V v) { return acc + v; }
};

// Scratch of one thread. Output rows are padded to whole vectors and every phase is long enough for the
// last tap to read a whole padded row, so the row loops run on full vectors only; lanes past the output
// width are computed and dropped.
template <typename T>
struct SeparableWork {
  static constexpr int L = Vec<T>::lanes;
  int64_t q_padded, phase_len;
  Buffer<T> padded, phases, row_out, row_max;
  Buffer<int64_t> row_index;
  explicit SeparableWork(const Pool2dShape& s)
      : q_padded(ceil_div(s.Q, L) * L),
        phase_len(ceil_div(std::max(ceil_div(std::max((s.Q - 1) * s.sw + (s.kw - 1) * s.dw + 1, s.pw + s.W), s.sw),
                                    (s.kw - 1) * s.dw / s.sw + q_padded), L) * L),
        padded(alloc_buffer<T>(phase_len * s.sw)),
        phases(alloc_buffer<T>(phase_len * s.sw)),
        row_out(alloc_buffer<T>(q_padded)),
        row_max(alloc_buffer<T>(s.Q)),
        row_index(alloc_buffer<int64_t>(s.Q)) {}
};

// Splits w.padded into `stride` phases (phase r holds columns r, r+stride, ...); returns phase 0, with
// phase r at + r * w.phase_len. Stride 1 needs no split.
template <typename T>
const T* split_phases(const Pool2dShape& s, SeparableWork<T>& w) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const T* __restrict t = w.padded.get();
  if (s.sw == 1) return t;
  T* __restrict ph = w.phases.get();
  if (s.sw == 2) {
    for (int64_t j = 0; j < w.phase_len; j += L) {  // phase_len is a whole number of vectors
      const V a = Vec<T>::load(t + 2 * j), b = Vec<T>::load(t + 2 * j + L);
      // Two-source permutes (vpermt2ps/pd on AVX-512): lanes 0..L-1 index a, L..2L-1 index b.
      Vec<T>::store(ph + j, __builtin_shuffle(a, b, Vec<T>::even_lanes()));
      Vec<T>::store(ph + w.phase_len + j, __builtin_shuffle(a, b, Vec<T>::odd_lanes()));
    }
  } else {
    for (int64_t r = 0; r < s.sw; ++r)
      for (int64_t j = 0; j < w.phase_len; ++j) ph[r * w.phase_len + j] = t[j * s.sw + r];
  }
  return ph;
}

template <typename T, class Op>
void separable_row(const Pool2dShape& s, const T* __restrict x, int64_t oh, T* __restrict out, SeparableWork<T>& w) {
  constexpr int L = Vec<T>::lanes;
  const T id = Op::template identity<T>();
  T* __restrict t = w.padded.get();
  const int64_t n_padded = w.phase_len * s.sw;
  std::fill(t, t + s.pw, id);
  std::fill(t + s.pw + s.W, t + n_padded, id);
  T* __restrict body = t + s.pw;
  bool first = true;
  for (int64_t kh = 0; kh < s.kh; ++kh) {
    const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
    if (ih < 0 || ih >= s.H) continue;
    const T* __restrict row = x + ih * s.W;
    if (first) {
      std::memcpy(body, row, s.W * sizeof(T));
      first = false;
      continue;
    }
    int64_t i = 0;
    for (; i + L <= s.W; i += L)
      Vec<T>::store(body + i, Op::combine_vec(Vec<T>::load(body + i), Vec<T>::load(row + i)));
    for (; i < s.W; ++i) body[i] = Op::combine(body[i], row[i]);
  }
  if (first) std::fill(body, body + s.W, id);  // unreachable with torch's padding rule; kept total
  const T* phase_base = split_phases(s, w);
  T* __restrict acc = s.Q == w.q_padded ? out : w.row_out.get();
  for (int64_t kw = 0; kw < s.kw; ++kw) {
    const int64_t o = kw * s.dw;
    const T* __restrict src = phase_base + (o % s.sw) * w.phase_len + o / s.sw;
    if (kw == 0) {
      std::memcpy(acc, src, w.q_padded * sizeof(T));
      continue;
    }
    for (int64_t q = 0; q < w.q_padded; q += L)
      Vec<T>::store(acc + q, Op::combine_vec(Vec<T>::load(acc + q), Vec<T>::load(src + q)));
  }
  if (acc != out) std::memcpy(out, acc, s.Q * sizeof(T));
}

// Stride-2 windows 2 wide (no padding) or 3 wide (padding 1) along the row, no dilation: the pools of
// ResNet and VGG. Each vector step combines the window's rows in registers, splits the combined columns
// into even and odd lanes and combines those (and, 3 wide, the odd lanes shifted by one, carrying the
// last lane of the previous step): no scratch rows, no phase split. Up to 8 window rows.
inline bool is_stride2_row(const Pool2dShape& s) {
  return s.sw == 2 && s.dw == 1 && s.kh <= 8 && ((s.kw == 2 && s.pw == 0) || (s.kw == 3 && s.pw == 1));
}

template <typename T, class Op>
void stride2_row(const Pool2dShape& s, const T* __restrict x, int64_t oh, T* __restrict out) {
  using V = typename Vec<T>::type;
  using M = typename Vec<T>::mask_type;
  constexpr int L = Vec<T>::lanes;
  const T id = Op::template identity<T>();
  const T* rows[8];
  int n = 0;
  for (int64_t kh = 0; kh < s.kh; ++kh) {
    const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
    if (ih >= 0 && ih < s.H) rows[n++] = x + ih * s.W;
  }
  if (n == 0) {  // unreachable with torch's padding rule; kept total
    std::fill(out, out + s.Q, id);
    return;
  }
  M shift_in;  // lane 0 from the previous step's last lane, lane l from lane l - 1
  for (int l = 0; l < L; ++l) shift_in[l] = L - 1 + l;
  V carry = V{} + id;
  int64_t ow = 0;
  for (; 2 * ow + 2 * L <= s.W && ow + L <= s.Q; ow += L) {
    V c0 = Vec<T>::load(rows[0] + 2 * ow), c1 = Vec<T>::load(rows[0] + 2 * ow + L);
    for (int r = 1; r < n; ++r) {
      c0 = Op::combine_vec(c0, Vec<T>::load(rows[r] + 2 * ow));
      c1 = Op::combine_vec(c1, Vec<T>::load(rows[r] + 2 * ow + L));
    }
    const V odd = __builtin_shuffle(c0, c1, Vec<T>::odd_lanes());
    V r = Op::combine_vec(__builtin_shuffle(c0, c1, Vec<T>::even_lanes()), odd);
    if (s.kw == 3) r = Op::combine_vec(r, __builtin_shuffle(carry, odd, shift_in));
    carry = odd;
    Vec<T>::store(out + ow, r);
  }
  for (; ow < s.Q; ++ow) {
    T acc = id;
    for (int64_t iw = std::max<int64_t>(2 * ow - s.pw, 0); iw < std::min(2 * ow - s.pw + s.kw, s.W); ++iw)
      for (int r = 0; r < n; ++r) acc = Op::combine(acc, rows[r][iw]);
    out[ow] = acc;
  }
}

// One output row of a reduction that does not need to know which element won.
template <typename T, class Op>
void reduce_row(const Pool2dShape& s, const T* x, int64_t oh, T* out, SeparableWork<T>& w) {
  if (is_stride2_row(s)) stride2_row<T, Op>(s, x, oh, out);
  else separable_row<T, Op>(s, x, oh, out, w);
}

// Max pooling with indices must pick the same element as torch on ties and NaNs, so each window is
// scanned in torch's row-major order: input rows in kernel order, and within a row the taps in order.
// Each input row is padded with -inf (padding never wins, as torch never reads it) and split into
// stride phases, so every tap is a contiguous shifted read and the compare-select loop vectorises.
template <typename T>
void max_pool_row_indices(const Pool2dShape& s, const T* __restrict x, int64_t oh, T* __restrict m,
                          int64_t* __restrict id, SeparableWork<T>& w) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T* __restrict padded = w.padded.get();
  std::fill(padded, padded + s.pw, neg_inf);
  std::fill(padded + s.pw + s.W, padded + w.phase_len * s.sw, neg_inf);
  std::fill(m, m + s.Q, neg_inf);
  int64_t first_h = oh * s.sh - s.ph;
  while (first_h < 0) first_h += s.dh;
  // An all -inf window reports its first in-bounds position, as torch does.
  for (int64_t ow = 0; ow < s.Q; ++ow) {
    int64_t c = ow * s.sw - s.pw;
    while (c < 0) c += s.dw;
    id[ow] = first_h * s.W + c;
  }
  for (int64_t kh = 0; kh < s.kh; ++kh) {
    const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
    if (ih < 0 || ih >= s.H) continue;
    std::memcpy(padded + s.pw, x + ih * s.W, s.W * sizeof(T));
    const T* phase_base = split_phases(s, w);
    for (int64_t kw = 0; kw < s.kw; ++kw) {
      const int64_t o = kw * s.dw;
      const T* __restrict src = phase_base + (o % s.sw) * w.phase_len + o / s.sw;
      const int64_t base = ih * s.W + o - s.pw;  // flat index of column ow*stride + o - pad is base + ow*stride
      for (int64_t ow = 0; ow < s.Q; ++ow) {
        const T v = src[ow];
        const bool u = replaces(v, m[ow]);
        m[ow] = u ? v : m[ow];
        id[ow] = u ? base + ow * s.sw : id[ow];
      }
    }
  }
}

template <typename T>
void max_pool_plane_indices(const Pool2dShape& s, const T* x, T* y, int64_t* idx, SeparableWork<T>& w) {
  for (int64_t oh = 0; oh < s.P; ++oh) max_pool_row_indices(s, x, oh, y + oh * s.Q, idx + oh * s.Q, w);
}

// Max-pool backward without stored indices: the winners are found again from the input, row by row
// into scratch, and the gradient scattered within the plane (in cache). Training then never writes or
// reads an int64 index tensor, which is a third of the bytes the indexed forward and backward move.
template <typename T>
void max_pool_plane_backward_from_input(const Pool2dShape& s, const T* x, const T* __restrict dy, T* __restrict dx,
                                        SeparableWork<T>& w) {
  std::fill(dx, dx + s.H * s.W, T(0));
  T* m = w.row_max.get();
  int64_t* id = w.row_index.get();
  for (int64_t oh = 0; oh < s.P; ++oh) {
    max_pool_row_indices(s, x, oh, m, id, w);
    const T* __restrict g = dy + oh * s.Q;
    for (int64_t ow = 0; ow < s.Q; ++ow) dx[id[ow]] += g[ow];
  }
}

// 2x2 windows at stride 2 (no padding, no dilation, every window whole): the windows tile the input,
// so each pass reads two input rows, splits them into the four window positions a b / c d with lane
// shuffles, and needs no scratch. The backward writes every input element once, its window's gradient
// or zero, instead of zero-filling the plane and scattering into it.
inline bool is_2x2_tiling(const Pool2dShape& s) {
  return s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.ph == 0 && s.pw == 0 && s.dh == 1 && s.dw == 1 &&
         2 * s.P <= s.H && 2 * s.Q <= s.W;
}

// Which of a, b, c, d wins each lane, scanning in torch's order (a b c d; see `replaces`): the masks
// say "b beat a", "c beat the max of a b", "d beat the max of a b c"; `m` is the maximum.
template <typename T>
struct Winners2x2 {
  using V = typename Vec<T>::type;
  using M = typename Vec<T>::mask_type;
  V m;
  M b, c, d;
  Winners2x2(V va, V vb, V vc, V vd) {
    b = (vb > va) | (vb != vb);
    m = b ? vb : va;
    c = (vc > m) | (vc != vc);
    m = c ? vc : m;
    d = (vd > m) | (vd != vd);
    m = d ? vd : m;
  }
};

template <typename T>
struct Winner2x2Scalar {
  T m;
  int k;  // 0..3 for a b c d
  Winner2x2Scalar(T a, T b, T c, T d) : m(a), k(0) {
    const T v[3] = {b, c, d};
    for (int i = 0; i < 3; ++i)
      if (replaces(v[i], m)) m = v[i], k = i + 1;
  }
};

template <typename T>
void max_pool_plane_backward_2x2(const Pool2dShape& s, const T* __restrict x, const T* __restrict dy, T* __restrict dx) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const V zero{};
  for (int64_t oh = 0; oh < s.P; ++oh) {
    const T* __restrict r0 = x + 2 * oh * s.W;
    const T* __restrict r1 = r0 + s.W;
    T* __restrict d0 = dx + 2 * oh * s.W;
    T* __restrict d1 = d0 + s.W;
    const T* __restrict g = dy + oh * s.Q;
    int64_t ow = 0;
    for (; ow + L <= s.Q; ow += L) {
      const V p0 = Vec<T>::load(r0 + 2 * ow), p1 = Vec<T>::load(r0 + 2 * ow + L);
      const V q0 = Vec<T>::load(r1 + 2 * ow), q1 = Vec<T>::load(r1 + 2 * ow + L);
      const Winners2x2<T> w(__builtin_shuffle(p0, p1, Vec<T>::even_lanes()), __builtin_shuffle(p0, p1, Vec<T>::odd_lanes()),
                            __builtin_shuffle(q0, q1, Vec<T>::even_lanes()), __builtin_shuffle(q0, q1, Vec<T>::odd_lanes()));
      const V gv = Vec<T>::load(g + ow);
      const V gd = w.d ? gv : zero;
      const V gc = w.c & ~w.d ? gv : zero;
      const V gb = w.b & ~(w.c | w.d) ? gv : zero;
      const V ga = w.b | w.c | w.d ? zero : gv;
      Vec<T>::store(d0 + 2 * ow, __builtin_shuffle(ga, gb, Vec<T>::interleave_low()));
      Vec<T>::store(d0 + 2 * ow + L, __builtin_shuffle(ga, gb, Vec<T>::interleave_high()));
      Vec<T>::store(d1 + 2 * ow, __builtin_shuffle(gc, gd, Vec<T>::interleave_low()));
      Vec<T>::store(d1 + 2 * ow + L, __builtin_shuffle(gc, gd, Vec<T>::interleave_high()));
    }
    for (; ow < s.Q; ++ow) {
      const int k = Winner2x2Scalar<T>(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]).k;
      d0[2 * ow] = k == 0 ? g[ow] : T(0);
      d0[2 * ow + 1] = k == 1 ? g[ow] : T(0);
      d1[2 * ow] = k == 2 ? g[ow] : T(0);
      d1[2 * ow + 1] = k == 3 ? g[ow] : T(0);
    }
    for (int64_t iw = 2 * s.Q; iw < s.W; ++iw) d0[iw] = d1[iw] = T(0);  // a last odd column is in no window
  }
  std::fill(dx + 2 * s.P * s.W, dx + s.H * s.W, T(0));  // nor is a last odd row
}

template <typename T>
void max_pool_plane(const Pool2dShape& s, const T* x, T* y, SeparableWork<T>& w) {
  for (int64_t oh = 0; oh < s.P; ++oh) reduce_row<T, MaxOp>(s, x, oh, y + oh * s.Q, w);
}

// `column_counts` holds avg_pool_axis_count along the width for every output column.
template <typename T>
void avg_pool_plane(const Pool2dShape& s, const T* x, T* y, SeparableWork<T>& w, const T* __restrict column_counts) {
  for (int64_t oh = 0; oh < s.P; ++oh) {
    T* __restrict row = y + oh * s.Q;
    reduce_row<T, SumOp>(s, x, oh, row, w);
    if (s.divisor_override) {
      for (int64_t ow = 0; ow < s.Q; ++ow) row[ow] /= T(s.divisor_override);
    } else {
      const T rows = T(avg_pool_axis_count(oh, s.H, s.kh, s.sh, s.ph, s.count_include_pad));
      for (int64_t ow = 0; ow < s.Q; ++ow) row[ow] /= rows * column_counts[ow];  // exact: small integers
    }
  }
}

template <typename T>
void avg_pool_plane_backward(const Pool2dShape& s, const T* __restrict dy, T* __restrict dx) {
  std::fill(dx, dx + s.H * s.W, T(0));
  for (int64_t oh = 0; oh < s.P; ++oh) {
    const int64_t h0 = std::max<int64_t>(oh * s.sh - s.ph, 0), h1 = std::min(oh * s.sh - s.ph + s.kh, s.H);
    for (int64_t ow = 0; ow < s.Q; ++ow) {
      const int64_t w0 = std::max<int64_t>(ow * s.sw - s.pw, 0), w1 = std::min(ow * s.sw - s.pw + s.kw, s.W);
      const T g = dy[oh * s.Q + ow] / T(avg_pool_divisor(s, oh, ow));
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) dx[ih * s.W + iw] += g;
    }
  }
}

template <typename T>
T plane_sum(const T* __restrict p, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc[4] = {V{}, V{}, V{}, V{}};  // four chains hide the add latency
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L)
    for (int c = 0; c < 4; ++c) acc[c] += Vec<T>::load(p + i + c * L);
  const V v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  T sum = T(0);
  for (int l = 0; l < L; ++l) sum += v[l];
  for (; i < n; ++i) sum += p[i];
  return sum;
}

template <typename T>
void adaptive_avg_plane(const Pool2dShape& s, const T* __restrict x, T* __restrict y) {
  if (s.P == 1 && s.Q == 1) {  // global average pooling
    y[0] = plane_sum(x, s.H * s.W) / T(s.H * s.W);
    return;
  }
  for (int64_t oh = 0; oh < s.P; ++oh) {
    const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
    for (int64_t ow = 0; ow < s.Q; ++ow) {
      const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
      T sum = T(0);
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) sum += x[ih * s.W + iw];
      y[oh * s.Q + ow] = sum / T((h1 - h0) * (w1 - w0));
    }
  }
}

template <typename T>
void adaptive_avg_plane_backward(const Pool2dShape& s, const T* __restrict dy, T* __restrict dx) {
  std::fill(dx, dx + s.H * s.W, T(0));
  for (int64_t oh = 0; oh < s.P; ++oh) {
    const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
    for (int64_t ow = 0; ow < s.Q; ++ow) {
      const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
      const T g = dy[oh * s.Q + ow] / T((h1 - h0) * (w1 - w0));
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) dx[ih * s.W + iw] += g;
    }
  }
}

template <typename T>
void adaptive_max_plane(const Pool2dShape& s, const T* __restrict x, T* __restrict y, int64_t* __restrict idx) {
  for (int64_t oh = 0; oh < s.P; ++oh) {
    const int64_t h0 = adaptive_start(oh, s.H, s.P), h1 = adaptive_end(oh, s.H, s.P);
    for (int64_t ow = 0; ow < s.Q; ++ow) {
      const int64_t w0 = adaptive_start(ow, s.W, s.Q), w1 = adaptive_end(ow, s.W, s.Q);
      T m = -std::numeric_limits<T>::infinity();
      int64_t best = h0 * s.W + w0;
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t iw = w0; iw < w1; ++iw) {
          const T v = x[ih * s.W + iw];
          if (replaces(v, m)) { m = v; best = ih * s.W + iw; }
        }
      y[oh * s.Q + ow] = m;
      idx[oh * s.Q + ow] = best;
    }
  }
}

// Runs fn(in, out) for every plane, `in` and `out` being the plane's offsets into the tensors of input
// planes (x, dx: H x W) and of output planes (y, dy, indices: P x Q); threaded when the work is worth
// waking the team for.
template <class Fn>
void for_each_plane(const Pool2dShape& s, Fn&& fn) {
  const int64_t in = s.H * s.W, out = s.P * s.Q;
  const bool threaded = worth_threading(s.planes * std::max(in, out));
#pragma omp parallel for schedule(static) if (threaded)
  for (int64_t p = 0; p < s.planes; ++p) fn(p * in, p * out);
}

// The same, with per-thread scratch for the separable row passes: fn(in, out, work).
template <typename T, class Fn>
void for_each_plane_separable(const Pool2dShape& s, Fn&& fn) {
  const int64_t in = s.H * s.W, out = s.P * s.Q;
  const bool threaded = worth_threading(s.planes * std::max(in, out));
#pragma omp parallel if (threaded)
  {
    SeparableWork<T> work(s);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s.planes; ++p) fn(p * in, p * out, work);
  }
}

}  // namespace

template <typename T>
void max_pool2d_forward(const Pool2dArgs<T>& a) {
  const Pool2dShape& s = a.s;
  if (a.indices) {
    for_each_plane_separable<T>(s, [&](int64_t in, int64_t out, SeparableWork<T>& w) {
      max_pool_plane_indices(s, a.x + in, a.y + out, a.indices + out, w);
    });
  } else {
    for_each_plane_separable<T>(s, [&](int64_t in, int64_t out, SeparableWork<T>& w) {
      max_pool_plane(s, a.x + in, a.y + out, w);
    });
  }
}

template <typename T>
int64_t max_pool2d_backward(const Pool2dArgs<T>& a) {
  const Pool2dShape& s = a.s;
  const int64_t in = s.H * s.W, out = s.P * s.Q;
  int64_t bad = 0;
  const bool threaded = worth_threading(s.planes * std::max(in, out));
#pragma omp parallel for schedule(static) if (threaded) reduction(+ : bad)
  for (int64_t p = 0; p < s.planes; ++p) {
    T* dx = a.dx + p * in;
    const T* dy = a.dy + p * out;
    const int64_t* id = a.indices_in + p * out;
    std::fill(dx, dx + in, T(0));
    for (int64_t i = 0; i < out; ++i) {
      // Indices may come from Python: one unsigned compare keeps a bad one from writing out of bounds.
      if (static_cast<uint64_t>(id[i]) < static_cast<uint64_t>(in)) dx[id[i]] += dy[i];
      else ++bad;
    }
  }
  return bad;
}

template <typename T>
void max_pool2d_backward_from_input(const Pool2dArgs<T>& a) {
  const Pool2dShape& s = a.s;
  if (is_2x2_tiling(s)) {
    for_each_plane(s, [&](int64_t in, int64_t out) {
      max_pool_plane_backward_2x2(s, a.x + in, a.dy + out, a.dx + in);
    });
    return;
  }
  for_each_plane_separable<T>(s, [&](int64_t in, int64_t out, SeparableWork<T>& w) {
    max_pool_plane_backward_from_input(s, a.x + in, a.dy + out, a.dx + in, w);
  });
}

template <typename T>
void avg_pool2d_forward(const Pool2dArgs<T>& a) {
  const Pool2dShape& s = a.s;
  std::vector<T> column_counts(s.Q);
  for (int64_t ow = 0; ow < s.Q; ++ow)
    column_counts[ow] = T(avg_pool_axis_count(ow, s.W, s.kw, s.sw, s.pw, s.count_include_pad));
  for_each_plane_separable<T>(s, [&](int64_t in, int64_t out, SeparableWork<T>& w) {
    avg_pool_plane(s, a.x + in, a.y + out, w, column_counts.data());
  });
}

template <typename T>
void avg_pool2d_backward(const Pool2dArgs<T>& a) {
  for_each_plane(a.s, [&](int64_t in, int64_t out) { avg_pool_plane_backward(a.s, a.dy + out, a.dx + in); });
}

template <typename T>
void adaptive_avg_pool2d_forward(const Pool2dArgs<T>& a) {
  for_each_plane(a.s, [&](int64_t in, int64_t out) { adaptive_avg_plane(a.s, a.x + in, a.y + out); });
}

template <typename T>
void adaptive_avg_pool2d_backward(const Pool2dArgs<T>& a) {
  for_each_plane(a.s, [&](int64_t in, int64_t out) { adaptive_avg_plane_backward(a.s, a.dy + out, a.dx + in); });
}

template <typename T>
void adaptive_max_pool2d_forward(const Pool2dArgs<T>& a) {
  for_each_plane(a.s, [&](int64_t in, int64_t out) { adaptive_max_plane(a.s, a.x + in, a.y + out, a.indices + out); });
}

#define MEDKERN_INSTANTIATE(T)                                            \
  template void max_pool2d_forward<T>(const Pool2dArgs<T>&);              \
  template int64_t max_pool2d_backward<T>(const Pool2dArgs<T>&);          \
  template void max_pool2d_backward_from_input<T>(const Pool2dArgs<T>&);  \
  template void avg_pool2d_forward<T>(const Pool2dArgs<T>&);              \
  template void avg_pool2d_backward<T>(const Pool2dArgs<T>&);             \
  template void adaptive_avg_pool2d_forward<T>(const Pool2dArgs<T>&);     \
  template void adaptive_avg_pool2d_backward<T>(const Pool2dArgs<T>&);    \
  template void adaptive_max_pool2d_forward<T>(const Pool2dArgs<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

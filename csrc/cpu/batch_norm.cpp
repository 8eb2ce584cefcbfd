// Each kernel splits the channels over the threads (a channel's statistics are one reduction, so no thread
// waits for another) and walks a channel's N planes of S contiguous values, a vector at a time. Sums are
// taken in vector lanes over chunks of kChunk values and added in double after each chunk: float32 sums of a
// 128 x 28 x 28 channel's squares in one accumulator would lose the digits the variance needs.
#include "batch_norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "gemm.h"  // Epilogue
#include "threading.h"

namespace medkern::cpu {
namespace {

constexpr int64_t kChunk = 256;  // values per lane-parallel partial sum

// Calls f(p, n) for each of channel c's planes (pointer to S values) of a tensor laid out like x.
template <typename T, class Fn>
void for_each_plane(const BatchNormShape& s, const T* base, int64_t c, Fn&& f) {
  for (int64_t n = 0; n < s.N; ++n) f(base + (n * s.C + c) * s.S, n);
}

template <class Fn>
void over_channels(const BatchNormShape& s, Fn&& f) {
  const int threads = static_cast<int>(std::min<int64_t>(threads_for(s.N * s.C * s.S), s.C));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < s.C; ++c) f(c);
}

// Two sums over a plane of S values: terms(i) gives the vectors (a, b) for values i .. i + L - 1 (the tail's
// lanes past S zero); their lanes are summed in float within a chunk and in double across chunks.
template <typename T>
struct PairSums {
  using V = typename Vec<T>::type;
  static constexpr int L = Vec<T>::lanes;
  double a[L] = {}, b[L] = {};

  template <class Terms>
  void add_plane(int64_t S, Terms&& terms) {
    for (int64_t c0 = 0; c0 < S; c0 += kChunk) {
      V va{}, vb{};
      for (int64_t i = c0; i < std::min(S, c0 + kChunk); i += L) {
        const auto [ta, tb] = terms(i, static_cast<int>(std::min<int64_t>(L, S - i)));
        va += ta;
        vb += tb;
      }
      for (int l = 0; l < L; ++l) {
        a[l] += double(va[l]);
        b[l] += double(vb[l]);
      }
    }
  }
  double total_a() const { return total(a); }
  double total_b() const { return total(b); }

 private:
  static double total(const double* v) {
    double t = 0;
    for (int l = 0; l < L; ++l) t += v[l];
    return t;
  }
};

// n values from p (n <= lanes), zero past them.
template <typename T>
inline typename Vec<T>::type load_part(const T* p, int n) {
  return n == Vec<T>::lanes ? Vec<T>::load(p) : Vec<T>::load_first(p, n);
}

// g = dy * act'(y), the gradient reaching the normalised value, from the output y (slope >= 0: y > 0 exactly
// where its argument is).
template <typename T>
inline typename Vec<T>::type gradient_in(typename Vec<T>::type dy, typename Vec<T>::type y, Activation act,
                                         typename Vec<T>::type slope) {
  using V = typename Vec<T>::type;
  if (act == Activation::none) return dy;
  return y > V{} ? dy : (act == Activation::relu ? V{} : dy * slope);
}

}  // namespace

template <typename T>
void batch_norm_statistics(const BatchNormArgs<T>& a) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const BatchNormShape& s = a.s;
  over_channels(s, [&](int64_t c) {
    // Shifted by the channel's first value, so that the sum of squares cancels little even where the mean is
    // far from zero relative to the spread.
    const T shift = a.x[c * s.S];
    const V sv = Vec<T>::broadcast(shift);
    PairSums<T> sums;
    for_each_plane(s, a.x, c, [&](const T* p, int64_t) {
      sums.add_plane(s.S, [&](int64_t i, int n) {
        // (a tail keeps its lanes past n zero: both operands have them zero)
        const V d = n == L ? Vec<T>::load(p + i) - sv : load_part(p + i, n) - Vec<T>::load_first(&sv[0], n);
        return std::pair{d, d * d};
      });
    });
    const double count = double(s.count()), mean = sums.total_a() / count;
    a.out_mean[c] = T(double(shift) + mean);
    a.out_var[c] = T(std::max(0.0, sums.total_b() / count - mean * mean));
  });
}

template <typename T>
void batch_norm_apply(const BatchNormArgs<T>& a) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const BatchNormShape& s = a.s;
  const Epilogue<T> ep{a.act, a.slope};
  over_channels(s, [&](int64_t c) {
    const T k = a.scale[c], b = a.shift[c];
    const V kv = Vec<T>::broadcast(k), bv = Vec<T>::broadcast(b);
    for_each_plane(s, a.x, c, [&](const T* p, int64_t n) {
      T* out = a.out_y + (n * s.C + c) * s.S;
      int64_t i = 0;
      for (; i + L <= s.S; i += L) Vec<T>::store(out + i, ep.apply(Vec<T>::load(p + i) * kv + bv));
      if (i < s.S) Vec<T>::store_first(out + i, ep.apply(load_part(p + i, int(s.S - i)) * kv + bv), int(s.S - i));
    });
  });
}

template <typename T>
void batch_norm_backward(const BatchNormArgs<T>& a) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const BatchNormShape& s = a.s;
  const int64_t plane = s.C * s.S;
  const V slope = Vec<T>::broadcast(a.slope);
  // g's vector at value i of the plane starting at `at` (lanes past the plane zero).
  const auto g_at = [&](int64_t at, int64_t i, int n) {
    const V dy = load_part(a.dy + at + i, n);
    return a.y ? gradient_in<T>(dy, load_part(a.y + at + i, n), a.act, slope) : dy;
  };
  over_channels(s, [&](int64_t c) {
    const T mean = a.mean[c];
    const double invstd = a.invstd[c];
    const V mv = Vec<T>::broadcast(mean);
    PairSums<T> sums;  // sum g and sum g * (x - mean)
    for_each_plane(s, a.x, c, [&](const T* x, int64_t n) {
      const int64_t at = n * plane + c * s.S;
      sums.add_plane(s.S, [&](int64_t i, int m) {
        const V g = g_at(at, i, m);
        return std::pair{g, g * (load_part(x + i, m) - mv)};  // zero lanes: g is zero there
      });
    });
    const double g_total = sums.total_a(), gx_total = sums.total_b();
    if (a.dbias) a.dbias[c] = T(g_total);
    if (a.dweight) a.dweight[c] = T(gx_total * invstd);
    if (!a.dx) return;
    // dx = k g + u x + w, with k = scale * invstd, u = -k invstd^2 mean(g (x - mean)), w = -k mean(g) - u mean.
    const double count = double(s.count()), k = (a.scale ? double(a.scale[c]) : 1.0) * invstd;
    const double u = -k * invstd * invstd * gx_total / count, w = -k * g_total / count - u * double(mean);
    const V kv = Vec<T>::broadcast(T(k)), uv = Vec<T>::broadcast(T(u)), wv = Vec<T>::broadcast(T(w));
    for_each_plane(s, a.x, c, [&](const T* x, int64_t n) {
      const int64_t at = n * plane + c * s.S;
      T* dx = a.dx + at;
      for (int64_t i = 0; i < s.S; i += L) {
        const int m = static_cast<int>(std::min<int64_t>(L, s.S - i));
        const V out = kv * g_at(at, i, m) + (uv * load_part(x + i, m) + wv);
        if (m == L) Vec<T>::store(dx + i, out);
        else Vec<T>::store_first(dx + i, out, m);
      }
    });
  });
}

#define MEDKERN_BATCH_NORM(T)                                         \
  template void batch_norm_statistics<T>(const BatchNormArgs<T>&);   \
  template void batch_norm_apply<T>(const BatchNormArgs<T>&);        \
  template void batch_norm_backward<T>(const BatchNormArgs<T>&);
MEDKERN_BATCH_NORM(float)
MEDKERN_BATCH_NORM(double)
#undef MEDKERN_BATCH_NORM

}  // namespace medkern::cpu

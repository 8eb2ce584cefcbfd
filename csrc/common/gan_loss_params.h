#pragma once
// The GAN loss family: params structs and the per-element arithmetic, shared by the CPU and CUDA kernels
// so the CPU test suite exercises the same formulas the GPU runs.
//
// A loss sees discriminator outputs of shape (N, ...) as N samples of M elements. Each of its two sides
// (real, fake) applies one per-element term to every element; a sample's loss is the mean of its terms
// over its M elements, summed over the sides, and times its weight. Reductions over samples, and every
// sum inside a sample, run in a fixed order over fixed chunks of kGanChunk elements, so results do not
// depend on the thread count or the launch configuration.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "macros.h"

namespace medkern {

// What one side applies to an element x (param p):
//   bce     max(x, 0) - p x + log1p(exp(-|x|))   binary cross-entropy with logits against target p
//   square  (x - p)^2 / 2                         least squares against target p
//   hinge   max(0, 1 + p x)                       p = -1: real side, p = +1: fake side
//   linear  p x                                   Wasserstein and hinge-generator terms
enum GanTerm : int { kGanTermNone = 0, kGanTermBce = 1, kGanTermSquare = 2, kGanTermHinge = 3, kGanTermLinear = 4 };

constexpr int64_t kGanChunk = 2048;

MEDKERN_HD int64_t gan_chunks_per_sample(int64_t M) { return (M + kGanChunk - 1) / kGanChunk; }

// Slots per chunk in the workspace: the real and fake loss sums and the real and fake derivative sums.
// Two more slots at the end hold the batch means of a relativistic loss (where a GPU keeps them).
constexpr int64_t kGanSlots = 4;

MEDKERN_HD int64_t gan_loss_workspace(int64_t N, int64_t M) { return N * gan_chunks_per_sample(M) * kGanSlots + 2; }

struct GanSide {
  int term;      // GanTerm; kGanTermNone when the side is absent (its pointers are then null)
  double param;
};

struct GanLossShape {
  int64_t N, M;
  GanSide real, fake;
  // Relativistic average (Jolicoeur-Martineau): each side is evaluated at x minus the other side's mean
  // over the whole batch, so the kernel first reduces both means and the derivatives gain a cross term
  // (left to the caller, from dsum_real / dsum_fake).
  bool relativistic;
  double scale;  // 1/N for reduction "mean", 1 for "sum" and "none"
};

template <typename T>
struct GanLossArgs {
  GanLossShape s;
  const T* real;      // N*M, or nullptr when the side is absent
  const T* fake;      // N*M, or nullptr
  const T* weight;    // N, or nullptr for weight 1
  T* per_sample;      // N: scale * w_n * loss_n
  T* total;           // 1: sum over n of per_sample (fixed order)
  T* d_real;          // N*M: d per_sample_n / d real (the direct term only when relativistic), or nullptr
  T* d_fake;          // N*M, or nullptr
  T* dsum_real;       // N: per-sample sums of d_real (relativistic only, else nullptr)
  T* dsum_fake;
  T* workspace;       // gan_loss_workspace(N, M)
};

// Gradient penalties on the critic's input gradient g, (N, ...) as N samples of M elements:
//   center < 0   p_n = ||g_n||^2            (R1, R2)
//   center >= 0  p_n = (||g_n|| - center)^2 (WGAN-GP, DRAGAN), with d p_n / d g_n = 0 where ||g_n|| = 0
//                                        (torch's subgradient of the norm at zero)
// per_sample_n = scale * p_n, total = their sum, and d per_sample_n / d g_n = coef_n * g_n.
struct GanPenaltyShape {
  int64_t N, M;
  double center;
  double scale;  // weight (times 1/N for reduction "mean")
};

template <typename T>
struct GanPenaltyArgs {
  GanPenaltyShape s;
  const T* g;
  T* per_sample;  // N
  T* total;       // 1
  T* coef;        // N
  T* workspace;   // N * gan_chunks_per_sample(M)
};

// exp(x) for x <= 0 and log1p(e) for e in [0, 1]: the only transcendental pieces of the logistic terms,
// written branch-free from +, *, / and bit casts so that the CPU loops vectorise (no libm calls) and the
// GPU computes bit for bit what the CPU tests check. Both are within a few ulp in either precision.
template <typename T> struct GanFloat;
template <> struct GanFloat<float> {
  using Bits = uint32_t;
  static constexpr int mantissa = 23, bias = 127, min_exp = -126;
  static constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
};
template <> struct GanFloat<double> {
  using Bits = uint64_t;
  static constexpr int mantissa = 52, bias = 1023, min_exp = -1022;
  static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
};

template <typename To, typename From>
MEDKERN_HD To gan_bit_cast(From v) {
  To r;
  memcpy(&r, &v, sizeof(r));
  return r;
}

template <typename T>
MEDKERN_HD T gan_exp_nonpositive(T x) {
  using F = GanFloat<T>;
  // Below min_exp * ln2 the true result is subnormal: clamping there instead returns 2^min_exp, which can
  // no longer change a loss of 1 + ... or a logistic probability, and keeps the whole computation one
  // straight line (a select on the result made the compiler evaluate the callers twice). NaN passes.
  const T lowest = T(F::min_exp) * T(0.6931471805599453);
  x = x < lowest ? lowest : x;
  // x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts, so r is exact to working precision).
  const T n = (x * T(1.4426950408889634) + F::shifter) - F::shifter;  // round(x / ln2)
  const T r = (x - n * T(0.693145751953125)) - n * T(1.4286068203094173e-06);
  T p;
  if constexpr (sizeof(T) == 4) {
    p = T(1.0 / 5040);
    p = p * r + T(1.0 / 720); p = p * r + T(1.0 / 120); p = p * r + T(1.0 / 24);
    p = p * r + T(1.0 / 6); p = p * r + T(0.5); p = p * r + T(1); p = p * r + T(1);
  } else {
    p = T(1.0 / 6227020800);
    p = p * r + T(1.0 / 479001600); p = p * r + T(1.0 / 39916800); p = p * r + T(1.0 / 3628800);
    p = p * r + T(1.0 / 362880); p = p * r + T(1.0 / 40320); p = p * r + T(1.0 / 5040);
    p = p * r + T(1.0 / 720); p = p * r + T(1.0 / 120); p = p * r + T(1.0 / 24);
    p = p * r + T(1.0 / 6); p = p * r + T(0.5); p = p * r + T(1); p = p * r + T(1);
  }
  // 2^n from n + bias placed in the exponent field (n >= min_exp after the clamp).
  const auto bits = gan_bit_cast<typename F::Bits>(n + T(F::bias) + F::shifter) << F::mantissa;
  return p * gan_bit_cast<T>(bits);
}

// log((1 + y) / (1 - y)) = 2 atanh(y) for y in [0, 1/3]: an odd series in y, exact to rounding after 8
// (float) or 17 (double) terms since y^2 <= 1/9. With y = e / (2 + e) it is log1p(e) for e in [0, 1].
// sum_{k=K..Last} y2^(k-K) / (2k + 1) in Horner form, unrolled at compile time (a loop here would keep
// the callers' element loops from vectorising).
template <int K, int Last, typename T>
MEDKERN_HD T gan_odd_series(T y2) {
  if constexpr (K == Last) return T(1) / T(2 * K + 1);
  else return T(1) / T(2 * K + 1) + y2 * gan_odd_series<K + 1, Last>(y2);
}

template <typename T>
MEDKERN_HD T gan_log_ratio(T y) {
  return T(2) * y * gan_odd_series<0, sizeof(T) == 4 ? 7 : 17>(y * y);
}

MEDKERN_HD float gan_sqrt(float x) { return sqrtf(x); }
MEDKERN_HD double gan_sqrt(double x) { return sqrt(x); }

// One element's term and its derivative. The BCE form never exponentiates a positive number, so it does
// not overflow at any logit, and matches torch's binary_cross_entropy_with_logits (whose derivative is
// sigmoid(x) - p). ReLU's conventions are torch's: zero derivative at the kink, NaN passes through.
template <int Term, typename T>
MEDKERN_HD void gan_term(T x, T p, T& loss, T& grad) {
  if constexpr (Term == kGanTermBce) {
    const T a = x < T(0) ? -x : x;
    const T e = gan_exp_nonpositive(-a);
    // One division serves both 1 / (1 + e) (the logistic) and e / (2 + e) (for log1p(e)).
    const T inv = T(1) / ((T(1) + e) * (T(2) + e));
    const T r = (T(2) + e) * inv;
    loss = (x > T(0) ? x : T(0)) - p * x + gan_log_ratio(e * (T(1) + e) * inv);
    grad = (x >= T(0) ? r : e * r) - p;
  } else if constexpr (Term == kGanTermSquare) {
    const T d = x - p;
    loss = T(0.5) * d * d;
    grad = d;
  } else if constexpr (Term == kGanTermHinge) {
    const T m = T(1) + p * x;
    loss = m <= T(0) ? T(0) : m;
    grad = m <= T(0) ? T(0) : p;
  } else {
    loss = p * x;
    grad = p;
  }
}

// The penalty of one sample from its squared norm: (p_n, coef_n) as described at GanPenaltyShape.
template <typename T>
MEDKERN_HD void gan_penalty_of(T sq, double center, double scale, T& per_sample, T& coef) {
  if (center < 0) {
    per_sample = T(scale) * sq;
    coef = T(2 * scale);
    return;
  }
  const T norm = gan_sqrt(sq), d = norm - T(center);
  per_sample = T(scale) * d * d;
  coef = norm == T(0) ? T(0) : T(2 * scale) * d / norm;  // NaN stays NaN
}

}  // namespace medkern

// GAN losses on the CPU: one pass over each side computes the loss sums and writes the gradient.
#include "gan_loss.h"

#include <algorithm>

namespace medkern::cpu {
namespace {

// Threads from these sizes (elements per side): below them the fork and join of a parallel region cost
// more than the second thread saves. Measured on 2 threads against 1, kernel call from Python, one side
// of N x 1 x H x H each for real and fake: the cheap terms (square, hinge, linear; plain sums) 8.0 | 7.5 us
// at 8192, 21.8 | 13.2 us at 57600 (a 64x1x30x30 PatchGAN); the logistic terms 7.1 | 6.7 us at 1024,
// 12.5 | 9.5 us at 4096, 107 | 57 us at 57600.
inline bool worth_threading(int64_t elements, bool expensive) {
  return elements >= (int64_t(1) << (expensive ? 10 : 13));
}

inline bool logistic(const GanLossShape& s) { return s.real.term == kGanTermBce || s.fake.term == kGanTermBce; }

struct Chunk { int64_t n, begin, len; };

inline Chunk chunk_of(int64_t c, int64_t M) {
  const int64_t per = gan_chunks_per_sample(M), n = c / per, begin = (c % per) * kGanChunk;
  return {n, begin, std::min(kGanChunk, M - begin)};
}

// Sums of one side's terms over x[0, len), each evaluated at x - shift, and of their derivatives times
// dscale, which are stored to d when WriteGrad.
template <int Term, bool WriteGrad, typename T>
void side_sums(const T* x, T* d, int64_t len, T p, T shift, T dscale, T& loss_sum, T& grad_sum) {
  T ls = 0, gs = 0;
#pragma omp simd reduction(+ : ls, gs)
  for (int64_t i = 0; i < len; ++i) {
    T l, g;
    gan_term<Term>(x[i] - shift, p, l, g);
    g *= dscale;
    if constexpr (WriteGrad) d[i] = g;
    ls += l;
    gs += g;
  }
  loss_sum = ls;
  grad_sum = gs;
}

template <bool WriteGrad, typename T>
void side_with(const GanSide& s, const T* x, T* d, int64_t len, T shift, T dscale, T& loss_sum, T& grad_sum) {
  const T p = T(s.param);
  switch (s.term) {
    case kGanTermBce: side_sums<kGanTermBce, WriteGrad>(x, d, len, p, shift, dscale, loss_sum, grad_sum); break;
    case kGanTermSquare: side_sums<kGanTermSquare, WriteGrad>(x, d, len, p, shift, dscale, loss_sum, grad_sum); break;
    case kGanTermHinge: side_sums<kGanTermHinge, WriteGrad>(x, d, len, p, shift, dscale, loss_sum, grad_sum); break;
    default: side_sums<kGanTermLinear, WriteGrad>(x, d, len, p, shift, dscale, loss_sum, grad_sum); break;
  }
}

// One side of one chunk; d (the side's gradient at the chunk) is written when not null.
template <typename T>
void side(const GanSide& s, const T* x, T* d, int64_t len, T shift, T dscale, T& loss_sum, T& grad_sum) {
  if (d) side_with<true>(s, x, d, len, shift, dscale, loss_sum, grad_sum);
  else side_with<false>(s, x, d, len, shift, dscale, loss_sum, grad_sum);
}

template <typename T>
T plain_sum(const T* x, int64_t len) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < len; ++i) s += x[i];
  return s;
}

// Sum over the chunks of slot `slot` of the chunks of sample n, in chunk order.
template <typename T>
T sample_sum(const T* ws, int64_t n, int64_t per, int64_t slot) {
  T s = 0;
  for (int64_t b = 0; b < per; ++b) s += ws[(n * per + b) * kGanSlots + slot];
  return s;
}

// The batch means of both sides (relativistic losses), through the same chunked order.
template <typename T>
void batch_means(const GanLossArgs<T>& a, T& mean_real, T& mean_fake) {
  const GanLossShape& s = a.s;
  const int64_t chunks = s.N * gan_chunks_per_sample(s.M);
#pragma omp parallel for schedule(static) if (worth_threading(s.N * s.M, false))
  for (int64_t c = 0; c < chunks; ++c) {
    const Chunk k = chunk_of(c, s.M);
    const int64_t off = k.n * s.M + k.begin;
    a.workspace[c * kGanSlots + 0] = plain_sum(a.real + off, k.len);
    a.workspace[c * kGanSlots + 1] = plain_sum(a.fake + off, k.len);
  }
  T sr = 0, sf = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    sr += a.workspace[c * kGanSlots + 0];
    sf += a.workspace[c * kGanSlots + 1];
  }
  const T count = T(s.N) * T(s.M);
  mean_real = sr / count;
  mean_fake = sf / count;
}

template <typename T>
void loss_chunks(const GanLossArgs<T>& a, T shift_real, T shift_fake) {
  const GanLossShape& s = a.s;
  const int64_t chunks = s.N * gan_chunks_per_sample(s.M);
#pragma omp parallel for schedule(static) if (worth_threading(s.N * s.M, logistic(s)))
  for (int64_t c = 0; c < chunks; ++c) {
    const Chunk k = chunk_of(c, s.M);
    const int64_t off = k.n * s.M + k.begin;
    const T dscale = T(s.scale) * (a.weight ? a.weight[k.n] : T(1)) / T(s.M);
    T* ws = a.workspace + c * kGanSlots;
    ws[0] = ws[1] = ws[2] = ws[3] = T(0);
    if (a.real) side(s.real, a.real + off, a.d_real ? a.d_real + off : nullptr, k.len, shift_real, dscale, ws[0], ws[2]);
    if (a.fake) side(s.fake, a.fake + off, a.d_fake ? a.d_fake + off : nullptr, k.len, shift_fake, dscale, ws[1], ws[3]);
  }
}

}  // namespace

template <typename T>
void gan_loss_forward(const GanLossArgs<T>& a) {
  const GanLossShape& s = a.s;
  T shift_real = 0, shift_fake = 0;
  if (s.relativistic) batch_means(a, shift_fake, shift_real);  // real is taken relative to fake's mean
  loss_chunks(a, shift_real, shift_fake);
  const int64_t per = gan_chunks_per_sample(s.M);
  T total = 0;
  for (int64_t n = 0; n < s.N; ++n) {
    const T w = a.weight ? a.weight[n] : T(1);
    const T loss = sample_sum(a.workspace, n, per, 0) + sample_sum(a.workspace, n, per, 1);
    a.per_sample[n] = T(s.scale) * w * (loss / T(s.M));
    total += a.per_sample[n];
    if (a.dsum_real) a.dsum_real[n] = sample_sum(a.workspace, n, per, 2);
    if (a.dsum_fake) a.dsum_fake[n] = sample_sum(a.workspace, n, per, 3);
  }
  *a.total = total;
}

template <typename T>
void gan_penalty_forward(const GanPenaltyArgs<T>& a) {
  const GanPenaltyShape& s = a.s;
  const int64_t per = gan_chunks_per_sample(s.M), chunks = s.N * per;
#pragma omp parallel for schedule(static) if (worth_threading(s.N * s.M, false))
  for (int64_t c = 0; c < chunks; ++c) {
    const Chunk k = chunk_of(c, s.M);
    const T* g = a.g + k.n * s.M + k.begin;
    T sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < k.len; ++i) sq += g[i] * g[i];
    a.workspace[c] = sq;
  }
  T total = 0;
  for (int64_t n = 0; n < s.N; ++n) {
    T sq = 0;
    for (int64_t b = 0; b < per; ++b) sq += a.workspace[n * per + b];
    gan_penalty_of(sq, s.center, s.scale, a.per_sample[n], a.coef[n]);
    total += a.per_sample[n];
  }
  *a.total = total;
}

template void gan_loss_forward<float>(const GanLossArgs<float>&);
template void gan_loss_forward<double>(const GanLossArgs<double>&);
template void gan_penalty_forward<float>(const GanPenaltyArgs<float>&);
template void gan_penalty_forward<double>(const GanPenaltyArgs<double>&);

}  // namespace medkern::cpu

#pragma once
// The CPU recurrent kernels and what they share: vector gate math, the per-step matrix product with a
// weight packed once per call, the batch split over threads, and the fused pointwise passes.
//
// Threads split the batch, not the step: batch rows are independent through time, so each thread runs
// the whole time loop over its own rows with no barrier per step (a fork/join per step costs more than
// the step's work at hidden 64). Small batches run on the calling thread.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/rnn_params.h"
#include "gemm.h"
#include "simd.h"

namespace medkern::cpu {

// --- nonlinearities ---------------------------------------------------------------------------------

// float: Eigen's rational tanh (a 13/6 odd/even polynomial on [-9, 9], a few ulp), which vectorises;
// libm's tanhf does not here (no -ffast-math, so no libmvec). sigmoid(x) = (1 + tanh(x/2)) / 2.
template <class V>
inline V rational_tanh(V x) {
  const V hi = V{} + 9.f, lo = V{} - 9.f;
  x = x < hi ? x : hi;
  x = x > lo ? x : lo;
  const V x2 = x * x;
  V p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  p = p * x;
  V q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return p / q;
}

template <typename T, class V>
struct CpuMath;

template <class V>
struct CpuMath<float, V> {
  static V one() { return V{} + 1.f; }
  static V tanh(V x) { return rational_tanh(x); }
  static V sigmoid(V x) { return rational_tanh(x * 0.5f) * 0.5f + 0.5f; }
};

// double: libm lane by lane (float64 runs are for accuracy, not speed).
template <class V>
struct CpuMath<double, V> {
  static V one() { return V{} + 1.0; }
  static V tanh(V x) { return map(x, [](double v) { return std::tanh(v); }); }
  static V sigmoid(V x) { return map(x, [](double v) { return 1.0 / (1.0 + std::exp(-v)); }); }
  template <class F>
  static V map(V x, F f) {
    if constexpr (std::is_same<V, double>::value) {
      return f(x);
    } else {
      for (int l = 0; l < Vec<double>::lanes; ++l) x[l] = f(x[l]);
      return x;
    }
  }
};

// Runs body(V-typed loads/stores helper) over j in [0, n): full vectors, then a scalar tail, so one
// templated lambda serves both. `body(j, tag)` where tag is a V or a T.
template <typename T, class Body>
inline void for_lanes(int64_t n, Body&& body) {
  constexpr int L = Vec<T>::lanes;
  int64_t j = 0;
  for (; j + L <= n; j += L) body(j, typename Vec<T>::type{});
  for (; j < n; ++j) body(j, T{});
}

template <class V, typename T>
inline V load_as(const T* p) {
  if constexpr (std::is_same<V, T>::value) return *p;
  else return Vec<T>::load(p);
}

template <class V, typename T>
inline void store_as(T* p, V v) {
  if constexpr (std::is_same<V, T>::value) *p = v;
  else Vec<T>::store(p, v);
}

// Unit j of consecutive gates of a gate-major row (gate k at p + k*H): load_gates<V>(p, H, j, i, f, g, o)
// reads i = gate 0, f = gate 1, ...; store_gates<V>(p, H, j, i, f, g, o) writes them back the same way.
template <class V, typename T, class... Vs>
inline void load_gates(const T* p, int64_t H, int64_t j, Vs&... v) {
  int64_t k = 0;
  ((v = load_as<V>(p + k++ * H + j)), ...);
}

template <class V, typename T, class... Vs>
inline void store_gates(T* p, int64_t H, int64_t j, Vs... v) {
  int64_t k = 0;
  (store_as<V>(p + k++ * H + j, v), ...);
}

// --- the per-step matrix product ---------------------------------------------------------------------

template <typename T>
struct RnnTile {
  static constexpr int L = Vec<T>::lanes;
  static constexpr int NV = kVecBytes >= 64 ? 4 : 2;  // vectors per panel row: 64 floats with AVX-512
  static constexpr int NR = L * NV;
  static constexpr int MR = kVecBytes >= 64 ? 6 : 4;  // MR * NV accumulators + NV + 1 fit the registers
};

// The right operand of C = A * B (B is K x N), packed once per call: NR-column panels, each k-major over
// the whole K, columns past N zero. A recurrent weight is at most a few hundred KiB, so its panels
// stream from L1/L2 every step.
template <typename T>
struct PackedB {
  Buffer<T> data;
  int64_t K = 0, N = 0, panels = 0;

  // B(k, n) = src[n * rs + k * cs].
  PackedB(const T* src, int64_t K_, int64_t N_, int64_t rs, int64_t cs) : K(K_), N(N_) {
    constexpr int NR = RnnTile<T>::NR;
    panels = ceil_div(N, NR);
    data = alloc_buffer<T>(panels * NR * K);
    for (int64_t p = 0; p < panels; ++p) {
      T* dst = data.get() + p * NR * K;
      for (int64_t k = 0; k < K; ++k)
        for (int j = 0; j < NR; ++j) {
          const int64_t n = p * NR + j;
          dst[k * NR + j] = n < N ? src[n * rs + k * cs] : T(0);
        }
    }
  }
  const T* panel(int64_t p) const { return data.get() + p * RnnTile<T>::NR * K; }
};

// C rows [0, MR) x one panel: c = base + a * B, base being a matrix (ldbase), a bias row, or zero.
template <typename T, int MR>
inline void rnn_tile(int64_t K, const T* __restrict a, int64_t lda, const T* __restrict panel, T* c, int64_t ldc,
                     const T* base, int64_t ldbase, const T* bias, int n_valid) {
  using G = RnnTile<T>;
  using V = typename Vec<T>::type;
  constexpr int NV = G::NV, L = G::L;
  // The base (a step's input projection) streams from a buffer of the whole sequence, far beyond the
  // caches: asking for its lines before the multiply-adds hides their latency behind them. A step of
  // 64x256x64 took 31 us with the base read at the end, 22 us with this (21 us with the base in cache).
  if (base)
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) __builtin_prefetch(base + i * ldbase + v * L);
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = Vec<T>::load(panel + k * G::NR + v * L);
    for (int i = 0; i < MR; ++i) {
      const V av = Vec<T>::broadcast(a[i * lda + k]);
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
  }
  if (n_valid == G::NR) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        V out = acc[i][v];
        if (base) out += Vec<T>::load(base + i * ldbase + v * L);
        else if (bias) out += Vec<T>::load(bias + v * L);
        Vec<T>::store(c + i * ldc + v * L, out);
      }
    return;
  }
  alignas(64) T tile[G::NR];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < NV; ++v) Vec<T>::store(tile + v * L, acc[i][v]);
    for (int j = 0; j < n_valid; ++j)
      c[i * ldc + j] = tile[j] + (base ? base[i * ldbase + j] : bias ? bias[j] : T(0));
  }
}

template <typename T, int MR>
inline void rnn_rows(int64_t K, const T* a, int64_t lda, const PackedB<T>& b, int64_t p, T* c, int64_t ldc,
                     const T* base, int64_t ldbase, const T* bias, int m) {
  if constexpr (MR > 1) {
    if (m < MR) return rnn_rows<T, MR - 1>(K, a, lda, b, p, c, ldc, base, ldbase, bias, m);
  }
  constexpr int NR = RnnTile<T>::NR;
  const int n_valid = static_cast<int>(std::min<int64_t>(NR, b.N - p * NR));
  rnn_tile<T, MR>(K, a, lda, b.panel(p), c + p * NR, ldc, base ? base + p * NR : nullptr, ldbase,
                  bias ? bias + p * NR : nullptr, n_valid);
}

// C[M x N] = base + A[M x K] * B. Panel-outer order: one panel (K x NR) stays in L1 across the rows.
template <typename T>
void rnn_gemm(int64_t M, const T* a, int64_t lda, const PackedB<T>& b, T* c, int64_t ldc, const T* base = nullptr,
              int64_t ldbase = 0, const T* bias = nullptr) {
  constexpr int MR = RnnTile<T>::MR;
  for (int64_t p = 0; p < b.panels; ++p)
    for (int64_t i = 0; i < M; i += MR)
      rnn_rows<T, MR>(b.K, a + i * lda, lda, b, p, c + i * ldc, ldc, base ? base + i * ldbase : nullptr, ldbase,
                      bias, static_cast<int>(std::min<int64_t>(MR, M - i)));
}

// c[i, n] += sum_k a[i, k] * w[n, k] for a row-major w (N x K) that is not worth packing: one step of a
// cell, where packing would copy the weight once to use it once. L rows of w at a time, dot products
// along k, reduced together.
template <typename T>
void rnn_gemm_unpacked(int64_t M, int64_t N, int64_t K, const T* a, int64_t lda, const T* w, T* c, int64_t ldc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t k_full = K / L * L;
  for (int64_t i = 0; i < M; ++i) {
    const T* ai = a + i * lda;
    T* ci = c + i * ldc;
    alignas(64) T a_tail[L] = {};
    for (int64_t k = k_full; k < K; ++k) a_tail[k - k_full] = ai[k];
    int64_t n = 0;
    for (; n + L <= N; n += L) {
      V acc[L];
      for (int r = 0; r < L; ++r) acc[r] = V{};
      for (int64_t k = 0; k < k_full; k += L) {
        const V av = Vec<T>::load(ai + k);
        for (int r = 0; r < L; ++r) acc[r] += av * Vec<T>::load(w + (n + r) * K + k);
      }
      if (k_full < K) {
        const V av = Vec<T>::load(a_tail);
        for (int r = 0; r < L; ++r) {
          alignas(64) T w_tail[L] = {};
          for (int64_t k = k_full; k < K; ++k) w_tail[k - k_full] = w[(n + r) * K + k];
          acc[r] += av * Vec<T>::load(w_tail);
        }
      }
      Vec<T>::store(ci + n, Vec<T>::load(ci + n) + reduce_rows<T>(acc));
    }
    for (; n < N; ++n) {
      T sum = T(0);
      for (int64_t k = 0; k < K; ++k) sum += ai[k] * w[n * K + k];
      ci[n] += sum;
    }
  }
}

// Weights (elements of W_ih and W_hh together) from which a cell step splits its hidden units over the
// threads. LSTM steps at batch 1, input 32, min of 15 medians on 1 | 2 threads: hidden 64 (25k weights)
// 2.1 | 2.2 us, hidden 96 (49k) 3.7 | 3.0 us, hidden 128 (82k) 5.4-5.8 | 4.0 us.
constexpr int64_t kCellThreadingWeights = 32768;

// One side's pre-activations of a cell step for hidden units [j0, j1) of each of `gates` gates (rows
// g*H + j of w, K wide): c[b, g*H + j] = (accumulate ? c : 0) + bias[g*H + j] + a[b, :] . w[g*H + j, :].
template <typename T>
void cell_gate_products(int64_t B, int gates, int64_t H, int64_t j0, int64_t j1, int64_t K, const T* a, const T* w,
                        const T* bias, bool accumulate, T* c) {
  const int64_t G = gates * H;
  for (int g = 0; g < gates; ++g) {
    const int64_t r0 = g * H + j0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < j1 - j0; ++j) {
        T& out = c[b * G + r0 + j];
        out = (accumulate ? out : T(0)) + (bias ? bias[r0 + j] : T(0));
      }
    rnn_gemm_unpacked(B, j1 - j0, K, a, K, w + r0 * K, c + r0, G);
  }
}

// --- threads ------------------------------------------------------------------------------------------

// fn(b0, b1) over contiguous batch chunks of equal size, one per thread. Threads only where each gets two
// full tiles. Equal rows beat whole tiles per thread: at B = 64 whole 6-row tiles split 30 | 34, and the
// first thread waited an eighth of every sequence for the second; 32 | 32 costs each a 2-row tile.
template <typename T, class Fn>
void for_batch_chunks(int64_t B, Fn&& fn) {
  constexpr int64_t MR = RnnTile<T>::MR;
  const int64_t tiles = ceil_div(B, MR);
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), tiles / 2));
  if (nt <= 1) {
    fn(int64_t(0), B);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t b0 = B * id / n, b1 = B * (id + 1) / n;
    if (b1 > b0) fn(b0, b1);
  }
}

// fn(j0, j1) over chunks of a cell step's hidden units, one per thread, cut at whole vectors. A thread
// computes every gate of its units, so it reads only its share of the weights (which then stay in its
// own core's L2 from one step to the next) and needs no other thread's gates. Threads only where the
// weights are large enough to pay for waking them.
template <typename T, class Fn>
void for_unit_chunks(int64_t H, int64_t weights, Fn&& fn) {
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t blocks = ceil_div(H, L);
  const int nt =
      weights < kCellThreadingWeights ? 1 : static_cast<int>(std::min<int64_t>(omp_get_max_threads(), blocks));
  if (nt <= 1) {
    fn(int64_t(0), H);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t j0 = std::min(H, blocks * id / n * L), j1 = std::min(H, blocks * (id + 1) / n * L);
    if (j1 > j0) fn(j0, j1);
  }
}

// --- small row helpers --------------------------------------------------------------------------------

template <typename T>
inline void copy_row(T* dst, const T* src, int64_t n) { std::memcpy(dst, src, n * sizeof(T)); }
template <typename T>
inline void zero_row(T* dst, int64_t n) { std::memset(dst, 0, n * sizeof(T)); }
template <typename T>
inline void add_row(T* dst, const T* src, int64_t n) {
  for_lanes<T>(n, [&](int64_t j, auto tag) {
    using V = decltype(tag);
    store_as<V>(dst + j, load_as<V>(dst + j) + load_as<V>(src + j));
  });
}

// Input sizes up to this are a signal's few channels: the projection and its backward run along N over
// w transposed (K x N, rows padded to whole vectors), one pass over the gate rows, rather than as GEMMs.
// (python/medkern/ops/rnn.py picks the backward by the same bound, _FUSED_PROJECTION_MAX_INPUT.)
constexpr int64_t kNarrowInput = 8;

// w (N x K, row-major) transposed to K rows of n_pad = N rounded up to whole vectors, zero past N.
template <typename T>
Buffer<T> transposed_rows(const T* w, int64_t N, int64_t K, int64_t n_pad) {
  Buffer<T> wt = alloc_buffer<T>(K * n_pad);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < n_pad; ++n) wt[k * n_pad + n] = n < N ? w[n * K + k] : T(0);
  return wt;
}

// out[r, :] = bias + sum_k x[r, k] w[:, k] for a narrow input, a vector of N at a time, each output row
// written once (a K = 1 projection of 11968 x 256 on 2 threads: 268 us; through the register-tiled GEMM,
// whose tile set-up outweighs a one-step reduction, 349-450 us).
template <typename T>
void narrow_input_projection(int64_t M, int64_t K, int64_t N, const T* x, const T* w, const T* bias, T* out,
                             int threads) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t n_pad = ceil_div(N, L) * L;
  const Buffer<T> wt = transposed_rows(w, N, K, n_pad);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < M; ++r) {
    const T* xr = x + r * K;
    T* o = out + r * N;
    for (int64_t n = 0; n < N; n += L) {
      const int valid = static_cast<int>(std::min<int64_t>(L, N - n));
      V acc = bias ? Vec<T>::load_first(bias + n, valid) : V{};
      for (int64_t k = 0; k < K; ++k) acc += Vec<T>::broadcast(xr[k]) * Vec<T>::load(wt.get() + k * n_pad + n);
      if (valid == L) Vec<T>::store(o + n, acc);
      else Vec<T>::store_first(o + n, acc, valid);
    }
  }
}

// out[M x N] = bias + x[M x K] * w^T for a row-major w (N x K): the input projection of every step at
// once. Rows are split over the threads; the packed weight is shared.
template <typename T>
void rnn_input_projection(int64_t M, int64_t K, int64_t N, const T* x, const T* w, const T* bias, T* out) {
  // Threads only where each gets enough multiply-adds to pay for waking it.
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(1, M * K * N / 65536)));
  if (K <= kNarrowInput) return narrow_input_projection(M, K, N, x, w, bias, out, nt);
  const PackedB<T> wt(w, K, N, K, 1);
  constexpr int64_t MR = RnnTile<T>::MR;
  const int64_t tiles = ceil_div(M, MR);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int64_t i = tile * MR, m = std::min(MR, M - i);
    rnn_gemm<T>(m, x + i * K, K, wt, out + i * N, N, nullptr, 0, bias);
  }
}

// The backward of rnn_input_projection for a narrow input (a signal's few channels): dx = dgx * w,
// dw = dgx^T * x and db = column sums of dgx, in one pass over dgx (M x N, the gate gradients of every
// step: 12 MB at B64 T187 H64). As three matrix products each read dgx once more, and torch's
// matrix-vector products reached a third of the copy bandwidth (1.3-1.7 ms each there). Any of dx, dw,
// db may be nullptr. Threads take row ranges with private dw, db sums, added in thread order.
template <typename T>
void rnn_input_projection_backward(int64_t M, int64_t K, int64_t N, const T* x, const T* w, const T* dgx, T* dx,
                                   T* dw, T* db) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t n_pad = ceil_div(N, L) * L;
  // w transposed, so that dx's dot products and dw's updates run along N.
  const Buffer<T> wt = transposed_rows(w, N, K, n_pad);
  const int nt = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), std::max<int64_t>(1, M * N / 65536)));
  const int64_t part = (K + 1) * n_pad;  // a thread's dw^T rows, then db
  Buffer<T> partial = alloc_buffer<T>(nt * part);
  std::fill_n(partial.get(), nt * part, T(0));
#pragma omp parallel num_threads(nt)
  {
    T* dwt = partial.get() + omp_get_thread_num() * part;
    T* dbp = dwt + K * n_pad;
    alignas(64) T row[L];
#pragma omp for schedule(static)
    for (int64_t r = 0; r < M; ++r) {
      const T* g = dgx + r * N;
      for (int64_t k = 0; k < K; ++k) {
        const T xv = x[r * K + k];
        V acc = V{};
        for (int64_t n = 0; n < n_pad; n += L) {
          V gv;
          if (n + L <= N) gv = Vec<T>::load(g + n);
          else gv = Vec<T>::load_first(g + n, static_cast<int>(N - n));
          acc += gv * Vec<T>::load(wt.get() + k * n_pad + n);
          if (dw) Vec<T>::store(dwt + k * n_pad + n, Vec<T>::load(dwt + k * n_pad + n) + gv * Vec<T>::broadcast(xv));
        }
        if (dx) {
          Vec<T>::store(row, acc);
          T sum = T(0);
          for (int l = 0; l < L; ++l) sum += row[l];
          dx[r * K + k] = sum;
        }
      }
      if (db)
        for (int64_t n = 0; n < n_pad; n += L) {
          const V gv = n + L <= N ? Vec<T>::load(g + n) : Vec<T>::load_first(g + n, static_cast<int>(N - n));
          Vec<T>::store(dbp + n, Vec<T>::load(dbp + n) + gv);
        }
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K && dw; ++k) {
      T sum = T(0);
      for (int t = 0; t < nt; ++t) sum += partial[t * part + k * n_pad + n];
      dw[n * K + k] = sum;
    }
    if (db) {
      T sum = T(0);
      for (int t = 0; t < nt; ++t) sum += partial[t * part + K * n_pad + n];
      db[n] = sum;
    }
  }
}

// --- entry points ---------------------------------------------------------------------------------------

// Whole-sequence recurrences (see RnnArgs for what each reads and writes). The caller has put the initial
// state into hs (and cs) at the first step's read slot.
template <typename T> void lstm_forward(const RnnArgs<T>& a);
template <typename T> void lstm_backward(const RnnArgs<T>& a);
template <typename T> void gru_forward(const RnnArgs<T>& a);
template <typename T> void gru_backward(const RnnArgs<T>& a);

// One inference step of a cell without packing: the no-grad fast path of LSTMCell / GRUCell.
template <typename T> void lstm_cell_forward(const RnnCellArgs<T>& a);
template <typename T> void gru_cell_forward(const RnnCellArgs<T>& a);

}  // namespace medkern::cpu

#pragma once
// A packed, register-blocked GEMM in the style of BLIS, specialised for convolution: the caller packs
// the operands (so im2col happens while packing, never as a separate tensor) and this file supplies the
// micro-kernel, the panel layout and the blocked loop.
//
//   C[M x N] = act((accumulate ? C : row_bias) + A[M x Kd] * B[Kd x N])
//
// Packed A: for each block of KC reduction steps, MR-row panels, each stored k-major (MR values per k).
// Packed B: NR-column panels, each stored k-major (NR values per k).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "../common/conv_params.h"
#include "simd.h"

namespace medkern::cpu {

template <typename T>
struct GemmTile {
  static constexpr int L = Vec<T>::lanes;
  // An 8 x 3-vector tile: MR*NV accumulators + NV B vectors + a broadcast fit the 32 AVX-512 registers
  // (4 x 3 in the 16 of AVX2). MR = 8 divides the usual channel counts (32, 64, 128) exactly, which an
  // MR of 12 did not (64 rows took 6 panels, 11% of them zero); measured 15-25% faster on 3x3 layers.
  static constexpr int NV = 3;                      // vectors per row of the C tile
  static constexpr int NR = L * NV;
  static constexpr int MR = kVecBytes >= 64 ? 8 : 4;
  static constexpr int64_t KC = 256;                // reduction block: an A panel (MR x KC) stays in L1
};

struct AlignedFree { void operator()(void* p) const { std::free(p); } };

template <typename T>
using Buffer = std::unique_ptr<T[], AlignedFree>;

template <typename T>
Buffer<T> alloc_buffer(int64_t n) {
  const size_t bytes = ((static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(p));
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// C tile (m_valid x n_valid of MR x NR) from kc steps of one A panel and one B panel.
// An activation applied as the final C values are stored (none while partial sums are still being
// accumulated over reduction blocks).
template <typename T>
struct Epilogue {
  Activation act = Activation::none;
  T slope = T(0);
  bool streaming = false;  // final values bypass the caches (outputs much larger than them)

  typename Vec<T>::type apply(typename Vec<T>::type v) const {
    using V = typename Vec<T>::type;
    if (act == Activation::none) return v;
    const V neg = act == Activation::relu ? V{} : v * Vec<T>::broadcast(slope);
    return v < V{} ? neg : v;
  }
  T apply(T v) const { return activate(v, act, slope); }
};

// Where the micro-kernel reads A: a packed panel, or in place the panel's first element of a row-major
// A (rows lda apart) or a column-major one (columns lda apart), all MR rows present. A product whose A is
// used against few columns of B pays mostly for packing A (11968 x 256 times 256 x 24: 0.97 ms with A
// packed, 0.82 ms with it read in place).
enum class ALayout { packed, rows, columns };

template <typename T, ALayout kA = ALayout::packed>
inline void micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c, int64_t ldc,
                         int m_valid, int n_valid, const T* row_bias, bool accumulate, const Epilogue<T>& ep = {},
                         int64_t lda = 0) {
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  constexpr int MR = G::MR, NV = G::NV, L = G::L;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = Vec<T>::load(b + k * G::NR + v * L);
    for (int i = 0; i < MR; ++i) {
      const V av = Vec<T>::broadcast(kA == ALayout::rows      ? a[i * lda + k]
                                     : kA == ALayout::columns ? a[k * lda + i]
                                                              : a[k * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
  }
  if (m_valid == MR && n_valid == G::NR) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        T* p = c + i * ldc + v * L;
        // (0 + acc is an instruction the compiler may not drop: -0 + 0 is +0.)
        const V sum = accumulate ? Vec<T>::load(p) + acc[i][v]
                                 : row_bias ? Vec<T>::broadcast(row_bias[i]) + acc[i][v] : acc[i][v];
        const V out = ep.apply(sum);
        if (ep.streaming)
          Vec<T>::store_streaming(p, out);
        else
          Vec<T>::store(p, out);
      }
    return;
  }
  alignas(64) T tile[MR][G::NR];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) Vec<T>::store(&tile[i][v * L], acc[i][v]);
  for (int i = 0; i < m_valid; ++i) {
    T* p = c + i * ldc;
    const T base = row_bias ? row_bias[i] : T(0);
    for (int j = 0; j < n_valid; ++j) p[j] = ep.apply((accumulate ? p[j] : base) + tile[i][j]);
  }
}

// Packs the MR-row panel ip of A (M x Kd, element (i, k) at src[i*rs + k*cs]) in every reduction block;
// rows past M are zero. Panels are independent: the threads of a parallel region can pack them.
template <typename T>
void pack_a_panel(const T* src, int64_t rs, int64_t cs, int64_t M, int64_t Kd, int64_t ip, T* dst) {
  constexpr int MR = GemmTile<T>::MR;
  const int64_t KC = GemmTile<T>::KC, panels = ceil_div(M, MR);
  for (int64_t k0 = 0; k0 < Kd; k0 += KC) {
    const int64_t kc = std::min(KC, Kd - k0);
    T* d = dst + panels * MR * k0 + ip * MR * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int i = 0; i < MR; ++i) {
        const int64_t row = ip * MR + i;
        d[k * MR + i] = row < M ? src[row * rs + (k0 + k) * cs] : T(0);
      }
  }
}

// Packs all of A.
template <typename T>
void pack_a(const T* src, int64_t rs, int64_t cs, int64_t M, int64_t Kd, T* dst) {
  for (int64_t ip = 0; ip < ceil_div(M, GemmTile<T>::MR); ++ip) pack_a_panel(src, rs, cs, M, Kd, ip, dst);
}

template <typename T>
int64_t packed_a_size(int64_t M, int64_t Kd) { return ceil_div(M, GemmTile<T>::MR) * GemmTile<T>::MR * Kd; }

template <typename T>
int64_t packed_b_size(int64_t N) { return ceil_div(N, GemmTile<T>::NR) * GemmTile<T>::NR * GemmTile<T>::KC; }

// C (+)= A * B for one column block. `pack_b(k0, kc, dst)` fills the B panels of reduction rows
// [k0, k0+kc) for all N columns (zero past N). `a_packed` comes from pack_a with the same M and Kd.
// The epilogue applies to the final sums only, so a caller that accumulates across calls passes none.
template <typename T, class PackB>
void gemm_packed(int64_t M, int64_t N, int64_t Kd, const T* a_packed, PackB&& pack_b, T* b_buf, T* C, int64_t ldc,
                 const T* row_bias, bool accumulate, const Epilogue<T>& epilogue = {}) {
  using G = GemmTile<T>;
  const int64_t m_panels = ceil_div(M, G::MR), n_panels = ceil_div(N, G::NR);
  for (int64_t k0 = 0; k0 < Kd; k0 += G::KC) {
    const int64_t kc = std::min<int64_t>(G::KC, Kd - k0);
    pack_b(k0, kc, b_buf);
    const T* a_block = a_packed + m_panels * G::MR * k0;
    const bool acc = accumulate || k0 > 0;
    const Epilogue<T> ep = k0 + kc == Kd ? epilogue : Epilogue<T>{};
    for (int64_t ip = 0; ip < m_panels; ++ip) {
      const int m_valid = static_cast<int>(std::min<int64_t>(G::MR, M - ip * G::MR));
      const T* bias = (row_bias && !acc) ? row_bias + ip * G::MR : nullptr;
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        const int n_valid = static_cast<int>(std::min<int64_t>(G::NR, N - jp * G::NR));
        micro_kernel<T>(kc, a_block + ip * G::MR * kc, b_buf + jp * G::NR * kc, C + ip * G::MR * ldc + jp * G::NR, ldc,
                        m_valid, n_valid, bias, acc, ep);
      }
    }
  }
}

// Scatters a contiguous row `src` of n values into the B panel layout for reduction row k of a block
// of kc rows: column j lands in panel j/NR at position k*NR + j%NR. Columns up to the panel edge are zeroed.
template <typename T>
inline void scatter_row_to_panels(const T* src, int64_t n, int64_t k, int64_t kc, T* dst) {
  constexpr int NR = GemmTile<T>::NR;
  int64_t j = 0;
  for (; j + NR <= n; j += NR) std::memcpy(dst + (j / NR) * NR * kc + k * NR, src + j, NR * sizeof(T));
  if (j < n) {
    T* p = dst + (j / NR) * NR * kc + k * NR;
    for (int64_t t = 0; t < NR; ++t) p[t] = j + t < n ? src[j + t] : T(0);
  }
}

}  // namespace medkern::cpu

// Strided matrix product (see matmul.h). BLIS's loop order on gemm.h's 8 x 48 micro-kernel: per block of
// KC reduction rows, a thread packs its columns of B once (they stay in L2), then takes one MR-row panel of
// A at a time (in L1 while it meets every B panel). Threads own disjoint rows of C (columns where C has too
// few rows), so there is no reduction between them.
#include "matmul.h"

#include <omp.h>

#include <algorithm>

#include "gemm.h"

namespace medkern::cpu {

namespace {

// Columns of C per block: the packed B block (KC x NC) stays in a core's L2 (480 KiB in float).
template <typename T>
constexpr int64_t kMatmulColumnBlock = 10 * GemmTile<T>::NR;

// Multiply-adds per thread below which another thread costs more to wake than it saves.
constexpr int64_t kMatmulWorkPerThread = int64_t(1) << 20;

// Reductions at least this many times longer than C's larger side are split along K over the threads.
constexpr int64_t kMatmulSplitK = 8;

// B rows [k0, k0 + kc) of columns [n0, n0 + n) in gemm.h's NR-column panels, zero past n.
template <typename T>
void pack_b_block(const T* b, int64_t rs, int64_t cs, int64_t k0, int64_t kc, int64_t n0, int64_t n, T* dst) {
  constexpr int NR = GemmTile<T>::NR;
  if (cs == 1) {
    for (int64_t k = 0; k < kc; ++k) scatter_row_to_panels(b + (k0 + k) * rs + n0, n, k, kc, dst);
    return;
  }
  for (int64_t p = 0; p < ceil_div(n, NR); ++p)
    for (int64_t k = 0; k < kc; ++k)
      for (int j = 0; j < NR; ++j) {
        const int64_t col = p * NR + j;
        dst[p * NR * kc + k * NR + j] = col < n ? b[(k0 + k) * rs + (n0 + col) * cs] : T(0);
      }
}

// C rows [m0, m1) x columns [n0, n1) on the calling thread.
template <typename T>
void matmul_block(int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K, const T* a, int64_t a_rs, int64_t a_cs,
                  const T* b, int64_t b_rs, int64_t b_cs, T* c, int64_t ldc) {
  using G = GemmTile<T>;
  if (m1 <= m0 || n1 <= n0) return;
  if (K == 0) {
    for (int64_t i = m0; i < m1; ++i) std::fill(c + i * ldc + n0, c + i * ldc + n1, T(0));
    return;
  }
  const int64_t NC = std::min(kMatmulColumnBlock<T>, n1 - n0);
  Buffer<T> b_buf = alloc_buffer<T>(ceil_div(NC, G::NR) * G::NR * G::KC);
  Buffer<T> a_buf = alloc_buffer<T>(G::MR * G::KC);
  for (int64_t j0 = n0; j0 < n1; j0 += NC) {
    const int64_t nc = std::min(NC, n1 - j0);
    for (int64_t k0 = 0; k0 < K; k0 += G::KC) {
      const int64_t kc = std::min(G::KC, K - k0);
      pack_b_block(b, b_rs, b_cs, k0, kc, j0, nc, b_buf.get());
      for (int64_t i = m0; i < m1; i += G::MR) {
        const int m_valid = static_cast<int>(std::min<int64_t>(G::MR, m1 - i));
        // A whole panel of a row-major or column-major (transposed) A is read in place: packing it cost a
        // quarter of a 512 x 6144 x 128 product, whose every element of A is used only 128 times. Part
        // panels and other strides are packed first.
        const bool rows = a_cs == 1 && m_valid == G::MR, cols = !rows && a_rs == 1 && m_valid == G::MR;
        if (!rows && !cols) pack_a_panel(a + i * a_rs + k0 * a_cs, a_rs, a_cs, int64_t(m_valid), kc, 0, a_buf.get());
        for (int64_t jp = 0; jp * G::NR < nc; ++jp) {
          const int n_valid = static_cast<int>(std::min<int64_t>(G::NR, nc - jp * G::NR));
          T* c_tile = c + i * ldc + j0 + jp * G::NR;
          const T* b_panel = b_buf.get() + jp * G::NR * kc;
          if (rows)
            micro_kernel<T, ALayout::rows>(kc, a + i * a_rs + k0, b_panel, c_tile, ldc, m_valid, n_valid, nullptr,
                                           k0 > 0, {}, a_rs);
          else if (cols)
            micro_kernel<T, ALayout::columns>(kc, a + i + k0 * a_cs, b_panel, c_tile, ldc, m_valid, n_valid, nullptr,
                                              k0 > 0, {}, a_cs);
          else
            micro_kernel<T>(kc, a_buf.get(), b_panel, c_tile, ldc, m_valid, n_valid, nullptr, k0 > 0);
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void matmul(int64_t M, int64_t N, int64_t K, const T* a, int64_t a_rs, int64_t a_cs, const T* b, int64_t b_rs,
            int64_t b_cs, T* c, int64_t ldc) {
  using G = GemmTile<T>;
  const int64_t work = M * N * std::max<int64_t>(K, 1);
  const int nt = static_cast<int>(std::clamp<int64_t>(work / kMatmulWorkPerThread, 1, omp_get_max_threads()));
  const int64_t m_panels = ceil_div(M, G::MR), n_panels = ceil_div(N, G::NR);
  // A long reduction into a small C (a weight gradient over every step: 11968 x 64 rows of B for 256 x 64
  // outputs) is split along K: split by rows, every thread would pack all of B for few rows of its own.
  // Each thread then sums into a C of its own (the first into c), added up in thread order afterwards.
  if (nt > 1 && K >= kMatmulSplitK * std::max(M, N)) {
    // C^T = B^T A^T where that pads an eighth less or more (64 columns fill 64 of 96 panel columns; a
    // transposed 256, 256 of 288), then C from it; a column-major A becomes a row-major B, which packs by
    // rows. (A smaller saving does not pay for packing the wider B: 512 x 6144 x 128, 9% less padding,
    // ran 327 against 376 GFLOP/s.)
    const auto padded = [](int64_t rows, int64_t cols) {
      return ceil_div(rows, G::MR) * G::MR * ceil_div(cols, G::NR) * G::NR;
    };
    if (a_rs == 1 && 8 * padded(N, M) <= 7 * padded(M, N)) {
      Buffer<T> ct = alloc_buffer<T>(N * M);
      matmul(N, M, K, b, b_cs, b_rs, a, a_cs, a_rs, ct.get(), M);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = ct[j * M + i];
      return;
    }
    Buffer<T> partial = alloc_buffer<T>((nt - 1) * M * N);
#pragma omp parallel num_threads(nt)
    {
      const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t k0 = K * id / n, k1 = K * (id + 1) / n;
      T* dst = id == 0 ? c : partial.get() + (id - 1) * M * N;
      matmul_block(0, M, 0, N, k1 - k0, a + k0 * a_cs, a_rs, a_cs, b + k0 * b_rs, b_rs, b_cs, dst, id == 0 ? ldc : N);
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t t = 0; t + 1 < n; ++t)
          for (int64_t j = 0; j < N; ++j) c[i * ldc + j] += partial[(t * M + i) * N + j];
    }
    return;
  }
  // Rows by whole panels while each thread gets at least two; otherwise columns by whole panels.
  const bool by_rows = m_panels >= 2 * nt || m_panels >= n_panels;
#pragma omp parallel num_threads(nt)
  {
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
    if (by_rows) {
      const int64_t p0 = m_panels * id / n, p1 = m_panels * (id + 1) / n;
      matmul_block(p0 * G::MR, std::min(M, p1 * G::MR), 0, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    } else {
      const int64_t p0 = n_panels * id / n, p1 = n_panels * (id + 1) / n;
      matmul_block(0, M, p0 * G::NR, std::min(N, p1 * G::NR), K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc);
    }
  }
}

template void matmul<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t,
                            float*, int64_t);
template void matmul<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t, const double*, int64_t,
                             int64_t, double*, int64_t);

}  // namespace medkern::cpu

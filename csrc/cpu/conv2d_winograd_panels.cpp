// Per transformed position e (16 of them): M_e (tiles x K) = V_e (tiles x C) * U_e (C x K), with V_e the input
// transform B^T d B of each tile's 4x4 patch and U_e = G g G^T; then Y = A^T M A per tile and channel. The
// input transform is split over the threads by channel; the GEMMs and output transform by channel panel.
#include "conv2d_winograd_panels.h"

#include <omp.h>

#include <algorithm>

#include "threading.h"
#include "winograd_transforms.h"

namespace medkern::cpu {
namespace {

using F = F2x3;
constexpr int kA = F::a, kE = kA * kA, kM = F::m;

template <typename T>
int64_t padded_outputs(const ConvShape& s) {
  return ceil_div(s.K, int64_t(GemmTile<T>::NR)) * GemmTile<T>::NR;
}

// U_e's panel jp over input channels [c0, c0 + kc): k-major rows of NR output channels, in KC blocks.
template <typename T>
int64_t kernel_offset(const ConvShape& s, int e, int64_t c0, int64_t kc, int64_t jp) {
  const int64_t Kpad = padded_outputs<T>(s);
  return e * Kpad * s.C + Kpad * c0 + jp * GemmTile<T>::NR * kc;
}

// V_e's row panel ip (MR tiles) over input channels [c0, c0 + kc): k-major columns of MR tiles, in KC blocks.
template <typename T>
int64_t input_offset(int64_t rows, int64_t C, int e, int64_t c0, int64_t kc, int64_t ip) {
  constexpr int64_t MR = GemmTile<T>::MR;
  return e * rows * C + rows * c0 + ip * MR * kc;
}

template <typename T>
void transform_kernel(const ConvShape& s, const T* w, int64_t k, int64_t c, T* packed) {
  constexpr int64_t NR = GemmTile<T>::NR, KC = GemmTile<T>::KC;
  const int64_t c0 = c / KC * KC, kc = std::min(KC, s.C - c0);
  T u[kA][kA] = {};
  if (k < s.K) {
    const T* g = w + (k * s.C + c) * 9;
    T gt[3][3], t[kA][3];  // gt: g transposed (columns); t = G g, row by row
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) gt[j][i] = g[i * 3 + j];
    for (int v = 0; v < 3; ++v) {
      T col[kA];
      apply<T>(F::G, gt[v], col);
      for (int i = 0; i < kA; ++i) t[i][v] = col[i];
    }
    for (int i = 0; i < kA; ++i) apply<T>(F::G, t[i], u[i]);
  }
  for (int e = 0; e < kE; ++e)
    packed[kernel_offset<T>(s, e, c0, kc, k / NR) + (c - c0) * NR + k % NR] = u[e / kA][e % kA];
}

// V for tile t of channel c, into the A panels of every e.
template <typename T>
void transform_input(const ConvShape& s, const T* x, int64_t tiles_h, int64_t tiles_w, int64_t rows, int64_t t,
                     int64_t c, T* v) {
  constexpr int64_t MR = GemmTile<T>::MR, KC = GemmTile<T>::KC;
  const int64_t c0 = c / KC * KC, kc = std::min(KC, s.C - c0);
  T d[kA][kA];
  if (t < s.N * tiles_h * tiles_w) {
    const int64_t n = t / (tiles_h * tiles_w), th = t / tiles_w % tiles_h, tw = t % tiles_w;
    const T* plane = x + (n * s.C + c) * s.H * s.W;
    const int64_t i0 = th * kM - s.pad_h, j0 = tw * kM - s.pad_w;
    for (int i = 0; i < kA; ++i)
      for (int j = 0; j < kA; ++j) {
        const int64_t ii = i0 + i, jj = j0 + j;
        d[i][j] = ii >= 0 && ii < s.H && jj >= 0 && jj < s.W ? plane[ii * s.W + jj] : T(0);
      }
  } else {
    for (auto& row : d) std::fill(row, row + kA, T(0));  // the last row panel's padding
  }
  T dt[kA][kA], h[kA][kA];  // B^T d by columns, then by rows
  for (int j = 0; j < kA; ++j) {
    T col[kA], out[kA];
    for (int i = 0; i < kA; ++i) col[i] = d[i][j];
    apply<T>(F::BT, col, out);
    for (int i = 0; i < kA; ++i) dt[i][j] = out[i];
  }
  for (int i = 0; i < kA; ++i) apply<T>(F::BT, dt[i], h[i]);
  for (int e = 0; e < kE; ++e)
    v[input_offset<T>(rows, s.C, e, c0, kc, t / MR) + (c - c0) * MR + t % MR] = h[e / kA][e % kA];
}

}  // namespace

template <typename T>
int64_t winograd_panels_size(const ConvShape& s) {
  return kE * padded_outputs<T>(s) * s.C;
}

template <typename T>
void pack_winograd_panels(const ConvShape& s, const T* w, T* packed) {
  const int64_t Kpad = padded_outputs<T>(s);
#pragma omp parallel for schedule(static) num_threads(threads_for(s.K * s.C * 64))
  for (int64_t k = 0; k < Kpad; ++k)
    for (int64_t c = 0; c < s.C; ++c) transform_kernel(s, w, k, c, packed);
}

template <typename T>
void conv2d_forward_winograd_panels(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                                    const T* residual, T* y, const Epilogue<T>& ep) {
  using V = typename Vec<T>::type;
  constexpr int64_t NR = GemmTile<T>::NR, MR = GemmTile<T>::MR, KC = GemmTile<T>::KC, L = Vec<T>::lanes;
  const int64_t tiles_h = ceil_div(s.P, int64_t(kM)), tiles_w = ceil_div(s.Q, int64_t(kM));
  const int64_t tiles = s.N * tiles_h * tiles_w, rows = ceil_div(tiles, MR) * MR, m_panels = rows / MR;
  const int64_t panels = padded_outputs<T>(s) / NR, PQ = s.P * s.Q;
  const int threads = threads_for(s.N * s.K * PQ * s.C * 9);
  Buffer<T> own;
  if (!packed) {
    own = alloc_buffer<T>(winograd_panels_size<T>(s));
    pack_winograd_panels(s, w, own.get());
    packed = own.get();
  }
  const Buffer<T> v = alloc_buffer<T>(kE * rows * s.C);
  const int64_t parts = std::min<int64_t>(threads, panels), part_panels = ceil_div(panels, parts);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t t = 0; t < rows; ++t) transform_input(s, x, tiles_h, tiles_w, rows, t, c, v.get());
    // (the loop's barrier: V is complete)
    const int64_t ldc = part_panels * NR;
    Buffer<T> m = alloc_buffer<T>(kE * rows * ldc);  // M_e for the part's channels, rows x ldc each
#pragma omp for schedule(static)
    for (int64_t part = 0; part < parts; ++part) {
      const int64_t jp0 = part * part_panels, jp1 = std::min(panels, jp0 + part_panels);
      for (int e = 0; e < kE; ++e)
        for (int64_t c0 = 0; c0 < s.C; c0 += KC) {
          const int64_t kc = std::min(KC, s.C - c0);
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const T* b = packed + kernel_offset<T>(s, e, c0, kc, jp);
            for (int64_t ip = 0; ip < m_panels; ++ip)
              micro_kernel<T>(kc, v.get() + input_offset<T>(rows, s.C, e, c0, kc, ip), b,
                              m.get() + (e * rows + ip * MR) * ldc + (jp - jp0) * NR, ldc, MR, NR, nullptr, c0 > 0);
          }
        }
      // Y = A^T M A for L channels at a time, then bias, residual and activation as each output is stored.
      const int64_t ch0 = jp0 * NR, ch1 = std::min(s.K, jp1 * NR);
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t n = t / (tiles_h * tiles_w), oh0 = t / tiles_w % tiles_h * kM, ow0 = t % tiles_w * kM;
        for (int64_t j = ch0; j < ch1; j += L) {
          V mv[kA][kA], h[kA][kM], out[kM][kM];
          for (int e = 0; e < kE; ++e) mv[e / kA][e % kA] = Vec<T>::load(m.get() + (e * rows + t) * ldc + (j - ch0));
          for (int i = 0; i < kA; ++i) apply<T>(F::AT, mv[i], h[i]);  // h[i][v] = (M A)[i][v]
          for (int u = 0; u < kM; ++u) {
            V col[kA];
            for (int i = 0; i < kA; ++i) col[i] = h[i][u];
            V o[kM];
            apply<T>(F::AT, col, o);
            for (int r = 0; r < kM; ++r) out[r][u] = o[r];
          }
          for (int64_t l = 0; l < L && j + l < ch1; ++l) {
            const int64_t k = j + l;
            const T b = bias ? bias[k] : T(0);
            for (int r = 0; r < kM && oh0 + r < s.P; ++r)
              for (int u = 0; u < kM && ow0 + u < s.Q; ++u) {
                const int64_t at = (n * s.K + k) * PQ + (oh0 + r) * s.Q + ow0 + u;
                y[at] = ep.apply(out[r][u][l] + b + (residual ? residual[at] : T(0)));
              }
          }
        }
      }
    }
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                                \
  template int64_t winograd_panels_size<T>(const ConvShape&);                                                 \
  template void pack_winograd_panels<T>(const ConvShape&, const T*, T*);                                      \
  template void conv2d_forward_winograd_panels<T>(const ConvShape&, const T*, const T*, const T*, const T*,   \
                                                  const T*, T*, const Epilogue<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

#include "conv2d_weight_panels.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "im2col.h"
#include "threading.h"

namespace medkern::cpu {
namespace {

template <typename T>
int64_t padded_channels(const ConvShape& s) {
  return ceil_div(s.k_per_group(), int64_t(GemmTile<T>::NR)) * GemmTile<T>::NR;
}

// Panel jp of group g over reduction rows [k0, k0 + kc): in the layout gemm_packed's B blocks have (k-major
// rows of NR channels), blocks of KC rows one after another, groups one after another.
template <typename T>
int64_t panel_offset(const ConvShape& s, int64_t g, int64_t k0, int64_t kc, int64_t jp) {
  const int64_t Npad = padded_channels<T>(s);
  return g * Npad * s.crs() + Npad * k0 + jp * GemmTile<T>::NR * kc;
}

template <typename T>
void pack_panel(const ConvShape& s, const T* w, int64_t g, int64_t jp, T* packed) {
  constexpr int64_t NR = GemmTile<T>::NR, KC = GemmTile<T>::KC;
  const int64_t Kg = s.k_per_group(), CRS = s.crs();
  for (int64_t k0 = 0; k0 < CRS; k0 += KC) {
    const int64_t kc = std::min(KC, CRS - k0);
    T* d = packed + panel_offset<T>(s, g, k0, kc, jp);
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t ch = jp * NR + j;
      const T* src = w + (g * Kg + ch) * CRS + k0;
      for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = ch < Kg ? src[k] : T(0);
    }
  }
}

// Output positions per task: the A block (rows x KC) and the task's C block stay in L2, and the weights,
// the streamed operand, are read once per block of rows.
constexpr int64_t kRowsPerTask = 96;
// Up to this many positions the weights outweigh the im2col rows.
constexpr int64_t kMaxRowsToSplitChannels = 128;

}  // namespace

template <typename T>
int64_t weight_panels_size(const ConvShape& s) {
  return s.groups * padded_channels<T>(s) * s.crs();
}

template <typename T>
void pack_weight_panels(const ConvShape& s, const T* w, T* packed) {
  const int64_t panels = padded_channels<T>(s) / GemmTile<T>::NR;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.K * s.crs() * 64))
  for (int64_t t = 0; t < s.groups * panels; ++t) pack_panel(s, w, t / panels, t % panels, packed);
}

template <typename T>
void conv2d_forward_weight_panels(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                                  const T* residual, T* y, const Epilogue<T>& ep) {
  constexpr int64_t NR = GemmTile<T>::NR, MR = GemmTile<T>::MR, KC = GemmTile<T>::KC;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.P * s.Q, HW = s.H * s.W;
  const int64_t RS = s.R * s.S, M = s.N * PQ, panels = padded_channels<T>(s) / NR;
  const int threads = threads_for(s.N * s.K * PQ * CRS);
  Buffer<T> own;
  if (!packed) {
    own = alloc_buffer<T>(weight_panels_size<T>(s));
    pack_weight_panels(s, w, own.get());
    packed = own.get();
  }
  // Few positions (weight-bound): the threads split the channel panels, so each streams its share of the
  // weights once, and each packs its own copy of the small A block. Otherwise row blocks of equal size, a whole
  // number of rounds of the threads (a last block of 4 rows beside two of 96 left a thread idle a third of the
  // time).
  const bool split_channels = M <= kMaxRowsToSplitChannels;
  const int64_t row_blocks =
      split_channels ? 1 : ceil_div(ceil_div(M, kRowsPerTask) * s.groups, int64_t(threads)) * threads / s.groups;
  const int64_t rows_per_task = ceil_div(ceil_div(M, std::max<int64_t>(row_blocks, 1)), MR) * MR;
  const int64_t parts = split_channels && s.groups < threads ? std::min<int64_t>(threads, panels) : 1;
  const int64_t part_panels = ceil_div(panels, parts), tasks = s.groups * row_blocks * parts;
  const TapIndex taps(s);
#pragma omp parallel num_threads(threads)
  {
    const int64_t ldc = part_panels * NR;
    Buffer<T> a_buf = alloc_buffer<T>(rows_per_task * KC);
    Buffer<T> c_buf = alloc_buffer<T>(rows_per_task * ldc);
    std::vector<int32_t> source(static_cast<size_t>(RS * rows_per_task));  // source[rs * rows + row]
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t part = t % parts, rb = t / parts % row_blocks, g = t / parts / row_blocks;
      const int64_t jp0 = part * part_panels, jp1 = std::min(panels, jp0 + part_panels);
      const int64_t m0 = rb * rows_per_task, rows = std::min(rows_per_task, M - m0), m_panels = ceil_div(rows, MR);
      if (jp0 >= jp1 || rows <= 0) continue;
      for (int64_t rs = 0; rs < RS; ++rs)
        fill_sources(taps.row(rs), m0, rows, PQ, g * Cg * HW, s.C * HW, source.data() + rs * rows_per_task);
      for (int64_t k0 = 0; k0 < CRS; k0 += KC) {
        const int64_t kc = std::min(KC, CRS - k0);
        // A: MR-row panels of the block's im2col rows, k-major; rows past the block are zero.
        for (int64_t ip = 0; ip < m_panels; ++ip) {
          T* d = a_buf.get() + ip * MR * kc;
          for (int64_t k = 0; k < kc; ++k) {
            const int64_t crs = k0 + k;
            const T* plane = x + (crs / RS) * HW;
            const int32_t* src = source.data() + (crs % RS) * rows_per_task + ip * MR;
            // Stride 1 inside the map: MR positions read MR adjacent inputs, one copy instead of MR gathers.
            // (Every offset is compared: across a row's end the padding (-1) can sit between adjacent offsets.)
            bool adjacent = ip * MR + MR <= rows && src[0] >= 0;
            for (int64_t i = 1; adjacent && i < MR; ++i) adjacent = src[i] == src[0] + i;
            if (adjacent) {
              std::memcpy(d + k * MR, plane + src[0], MR * sizeof(T));
              continue;
            }
            for (int64_t i = 0; i < MR; ++i)
              d[k * MR + i] = ip * MR + i < rows && src[i] >= 0 ? plane[src[i]] : T(0);
          }
        }
        for (int64_t jp = jp0; jp < jp1; ++jp) {
          const T* b = packed + panel_offset<T>(s, g, k0, kc, jp);
          for (int64_t ip = 0; ip < m_panels; ++ip)
            micro_kernel<T>(kc, a_buf.get() + ip * MR * kc, b, c_buf.get() + ip * MR * ldc + (jp - jp0) * NR, ldc,
                            MR, NR, nullptr, k0 > 0);
        }
      }
      // C (positions x channels) to y's channel planes, with the epilogue.
      const int64_t ch0 = jp0 * NR, ch1 = std::min(Kg, jp1 * NR);
      for (int64_t j = ch0; j < ch1; ++j) {
        const int64_t k = g * Kg + j;
        const T b = bias ? bias[k] : T(0);
        const T* c = c_buf.get() + (j - ch0);
        for (int64_t r = 0; r < rows;) {
          const int64_t n = (m0 + r) / PQ, p = (m0 + r) % PQ, run = std::min(PQ - p, rows - r);
          const int64_t at = (n * s.K + k) * PQ + p;
          T* out = y + at;
          const T* add = residual ? residual + at : nullptr;
          for (int64_t i = 0; i < run; ++i) out[i] = ep.apply(c[(r + i) * ldc] + b + (add ? add[i] : T(0)));
          r += run;
        }
      }
    }
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                              \
  template int64_t weight_panels_size<T>(const ConvShape&);                                                 \
  template void pack_weight_panels<T>(const ConvShape&, const T*, T*);                                      \
  template void conv2d_forward_weight_panels<T>(const ConvShape&, const T*, const T*, const T*, const T*,   \
                                                const T*, T*, const Epilogue<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

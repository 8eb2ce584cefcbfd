#pragma once
// The padded grid of the unpacked ("shifted") convolution kernels: a layout of a block of the input in
// which every kernel tap is a plain offset, so that the im2col row of tap (c, r, s) is a contiguous run of
// the grid and nothing needs packing.
//
// Along one axis, a convolution with stride t reads padded coordinate o*t + r*dil for output o and tap r.
// Writing r*dil = shift*t + phase, that is coordinate (o + shift)*t + phase: element o + shift of the
// phase's plane, which holds the padded coordinates phase, phase + t, phase + 2t, ... So each phase is a
// stride-1 plane, and tap r reads its phase's plane shifted by `shift`. (Stride 1: one phase, shift r*dil.)
//
// The grid stores each plane in rows of a common length, data after `lead` zeros (the plane's elements
// that fall in the leading padding) and zeros after it. A row is long enough for the outputs, for its
// data, and for the taps of the last outputs to run past its end only into the next row's leading zeros,
// which double as this row's trailing padding. Images are stacked the same way along the row axis, their
// padding rows shared. Output position (v, q) of the grid (v = image * rows_per_image + output row) then
// reads tap (r, s) at flat offset (v + shift_h[r]) * row_len + q + shift_w[s] of the tap's plane; grid
// positions with no output (the extra rows and columns) are computed and thrown away, or carry zero dy.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/conv_params.h"
#include "gemm.h"
#include "simd.h"

namespace medkern::cpu {

struct GridAxis {
  int64_t len = 0;        // grid cells per image along this axis (row length, or rows per image)
  int64_t max_shift = 0;  // the largest tap shift
  int64_t planes = 0;     // phases that some tap reads
  std::vector<int64_t> tap_plane, tap_shift;  // per tap: index among the used phases, shift
  std::vector<int64_t> lead, count, phase;    // per used phase: leading zeros, data elements, phase
  std::vector<int64_t> plane_of;              // per phase: its index among the used ones, or -1

  GridAxis(int64_t in, int64_t out, int64_t taps, int64_t stride, int64_t pad, int64_t dil)
      : len(out), tap_plane(taps), tap_shift(taps), plane_of(stride, -1) {
    for (int64_t r = 0; r < taps; ++r) {
      const int64_t p = r * dil % stride;
      if (plane_of[p] < 0) {
        plane_of[p] = planes++;
        phase.push_back(p);
        lead.push_back(p >= pad ? 0 : ceil_div(pad - p, stride));
        count.push_back(std::max<int64_t>(0, ceil_div(in + pad - p, stride) - lead.back()));
      }
      tap_plane[r] = plane_of[p];
      tap_shift[r] = r * dil / stride;
      max_shift = std::max(max_shift, tap_shift[r]);
    }
    for (int64_t r = 0; r < taps; ++r) {
      const int64_t i = tap_plane[r];
      // Data fits in the row, and the last output's read runs past the row's end only into the leading
      // zeros of the next.
      len = std::max({len, lead[i] + count[i], out + tap_shift[r] - lead[i]});
    }
  }
};

struct ShiftedGrid {
  GridAxis h, w;
  explicit ShiftedGrid(const ConvShape& s)
      : h(s.H, s.P, s.R, s.stride_h, s.pad_h, s.dil_h), w(s.W, s.Q, s.S, s.stride_w, s.pad_w, s.dil_w) {}
  int64_t planes() const { return h.planes * w.planes; }
  // Grid cells per output position: what the padding rows and columns cost in wasted multiply-adds.
  bool waste_at_most(int64_t num, int64_t den, const ConvShape& s) const {
    return den * h.len * w.len <= num * s.P * s.Q;
  }
};

// How a convolution's grid rows (N * rows_per_image of them) split into blocks, one task each, and the
// sizes of a block's buffers.
struct GridBlocks {
  int64_t total_rows, rows_per_block, blocks, positions, x_len;

  // `cells`: grid cells per block wanted (a multiple of `align`, the widest vector run of the kernel).
  GridBlocks(const ShiftedGrid& grid, int64_t images, int64_t cells, int64_t threads, int64_t align)
      : total_rows(images * grid.h.len) {
    blocks = ceil_div(total_rows * grid.w.len, cells);
    blocks = std::min(total_rows, ceil_div(blocks, threads) * threads);  // whole rounds of the threads
    rows_per_block = ceil_div(total_rows, blocks);
    blocks = ceil_div(total_rows, rows_per_block);
    positions = ceil_div(rows_per_block * grid.w.len, align) * align;
    // A plane also holds the rows the block's taps reach below it, and one more for reads past a row's end.
    x_len = ceil_div(positions + (grid.h.max_shift + 1) * grid.w.len + grid.w.max_shift, align) * align;
  }
  int64_t first_row(int64_t block) const { return block * rows_per_block; }
  int64_t rows(int64_t block) const { return std::min(rows_per_block, total_rows - first_row(block)); }
};

// d[j] = src[2j] for j < n, reading only src[0 .. avail): two (masked) loads and one shuffle per vector of
// output, where the element-by-element copy of a stride-2 grid cost a quarter of the forward.
template <typename T>
inline void copy_even(const T* src, int64_t avail, int64_t n, T* d) {
  constexpr int L = Vec<T>::lanes;
  for (int64_t j = 0; j < n; j += L) {
    const int64_t left = avail - 2 * j;
    const auto lo = left >= L ? Vec<T>::load(src + 2 * j) : Vec<T>::load_first(src + 2 * j, static_cast<int>(left));
    const auto hi = left >= 2 * L ? Vec<T>::load(src + 2 * j + L)
                  : left > L    ? Vec<T>::load_first(src + 2 * j + L, static_cast<int>(left - L))
                                : typename Vec<T>::type{};
    const auto even = __builtin_shuffle(lo, hi, Vec<T>::even_lanes());
    if (n - j >= L) Vec<T>::store(d + j, even);
    else Vec<T>::store_first(d + j, even, static_cast<int>(n - j));
  }
}

// The input planes of grid rows [v0, ...) for the Cg channels of group g: buf[(c * planes + plane) * x_len
// + (u - v0) * row_len + j], zero wherever the plane has no input element. Input rows are read in order,
// channel by channel, which the hardware prefetcher follows (row phase by row phase, a stride-2 copy of
// 32x64x32x32 spent 2/3 of its time waiting for loads).
template <typename T>
void copy_input_planes(const ConvShape& s, const ShiftedGrid& grid, const GridBlocks& b, const T* x, int64_t g,
                       int64_t v0, T* buf) {
  const int64_t Cg = s.c_per_group(), len = grid.w.len, u_end = v0 + ceil_div(b.x_len, len);
  std::fill(buf, buf + Cg * grid.planes() * b.x_len, T(0));
  const int64_t n_end = std::min(s.N, u_end / grid.h.len + 1);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t n = std::max<int64_t>(0, v0 / grid.h.len - 1); n < n_end; ++n)
      for (int64_t ih = 0; ih < s.H; ++ih) {
        // Padded row ih + pad_h is row i of its phase's plane, which is grid row n * h.len + i.
        const int64_t t = ih + s.pad_h, ph = grid.h.plane_of[t % s.stride_h], u = n * grid.h.len + t / s.stride_h;
        if (ph < 0 || u < v0 || u >= u_end) continue;
        const T* row = x + ((n * s.C + g * Cg + c) * s.H + ih) * s.W;
        for (int64_t pw = 0; pw < grid.w.planes; ++pw) {
          const int64_t j0 = grid.w.lead[pw], at = (u - v0) * len + j0;
          const int64_t run = std::min(grid.w.count[pw], b.x_len - at);
          T* d = buf + (c * grid.planes() + ph * grid.w.planes + pw) * b.x_len + at;
          const T* src = row + j0 * s.stride_w + grid.w.phase[pw] - s.pad_w;
          if (s.stride_w == 1) std::memcpy(d, src, std::max<int64_t>(run, 0) * sizeof(T));
          else if (s.stride_w == 2) copy_even(src, row + s.W - src, run, d);
          else for (int64_t j = 0; j < run; ++j) d[j] = src[j * s.stride_w];
        }
      }
}

// Offset of tap (c, r, s) of a group, in im2col row order, within the block's input planes.
inline std::vector<int64_t> tap_offsets(const ConvShape& s, const ShiftedGrid& grid, const GridBlocks& b) {
  const int64_t RS = s.R * s.S;
  std::vector<int64_t> off(static_cast<size_t>(s.crs()));
  for (int64_t crs = 0; crs < s.crs(); ++crs) {
    const int64_t c = crs / RS, r = crs % RS / s.S, sx = crs % s.S;
    const int64_t plane = grid.h.tap_plane[r] * grid.w.planes + grid.w.tap_plane[sx];
    off[crs] = (c * grid.planes() + plane) * b.x_len + grid.h.tap_shift[r] * grid.w.len + grid.w.tap_shift[sx];
  }
  return off;
}

// Calls fn(n, oh, grid offset) for each output row among grid rows [v0, v0 + rows).
template <class Fn>
void for_each_output_row(const ConvShape& s, const ShiftedGrid& grid, int64_t v0, int64_t rows, Fn&& fn) {
  for (int64_t v = v0; v < v0 + rows; ++v) {
    const int64_t n = v / grid.h.len, oh = v % grid.h.len;
    if (n < s.N && oh < s.P) fn(n, oh, (v - v0) * grid.w.len);
  }
}

// dy of grid rows [v0 - halo_rows, v0 + rows) for the Kg channels of group g: buf[k * ld + (v - v0 +
// halo_rows) * row_len + q], zero wherever the grid has no output. The halo holds the rows a grad-input
// block reads back to.
template <typename T>
void copy_grad_output(const ConvShape& s, const ShiftedGrid& grid, const T* dy, int64_t g, int64_t v0, int64_t rows,
                      int64_t halo_rows, int64_t ld, T* buf) {
  const int64_t Kg = s.k_per_group();
  std::fill(buf, buf + Kg * ld, T(0));
  const int64_t first = std::max<int64_t>(0, v0 - halo_rows), skipped = (first - (v0 - halo_rows)) * grid.w.len;
  for_each_output_row(s, grid, first, v0 + rows - first, [&](int64_t n, int64_t oh, int64_t at) {
    for (int64_t k = 0; k < Kg; ++k)
      std::memcpy(buf + k * ld + skipped + at, dy + ((n * s.K + g * Kg + k) * s.P + oh) * s.Q, s.Q * sizeof(T));
  });
}

// One MR x NR tile of the block's outputs over `steps` reduction steps: c[i * ldc + j] = act((accumulate ?
// c[i * ldc + j] : bias[i]) + sum_k a[k * MR + i] * b_k[j]), where b_k = planes + off[k] is reduction step
// k's run of the grid.
template <typename T>
void grid_tile(int64_t steps, const T* __restrict a, const T* __restrict planes, const int64_t* __restrict off,
                  T* __restrict c, int64_t ldc, bool accumulate, const T* bias, const Epilogue<T>& ep) {
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  constexpr int MR = G::MR, NV = G::NV, L = G::L;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v)
      acc[i][v] = accumulate ? Vec<T>::load(c + i * ldc + v * L) : Vec<T>::broadcast(bias ? bias[i] : T(0));
  for (int64_t k = 0; k < steps; ++k) {
    const T* b = planes + off[k];
    V bv[NV];
    for (int v = 0; v < NV; ++v) {
      bv[v] = Vec<T>::load(b + v * L);
      asm("" : "+x"(bv[v]));  // one load per vector, not one folded into each of the MR multiply-adds
    }
    for (int i = 0; i < MR; ++i) {
      const V av = Vec<T>::broadcast(a[k * MR + i]);
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) Vec<T>::store(c + i * ldc + v * L, ep.apply(acc[i][v]));
}

// out[i * ldc + j] for the rows of `panels` MR-row panels and grid positions j < cols (rounded up to NR):
// act(bias[i] + sum_k a[k, i] * b_k[j]) over `steps` reduction steps, a packed k-major per panel and b_k =
// planes + off[k]. The reduction goes in chunks whose runs (a few lines each) stay in L1 while every panel
// passes over them: the taps of strided convolutions spread over stride^2 planes.
template <typename T>
void grid_gemm(int64_t panels, int64_t steps, const T* packed, const T* planes, const int64_t* off, int64_t cols,
               T* out, int64_t ldc, const T* bias, const Epilogue<T>& ep) {
  using G = GemmTile<T>;
  constexpr int64_t kChunk = 64;
  for (int64_t j0 = 0; j0 < cols; j0 += G::NR)
    for (int64_t k0 = 0; k0 < steps; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, steps - k0);
      const Epilogue<T> last = k0 + kc == steps ? ep : Epilogue<T>{};
      for (int64_t p = 0; p < panels; ++p)
        grid_tile<T>(kc, packed + (p * steps + k0) * G::MR, planes + j0, off + k0, out + p * G::MR * ldc + j0, ldc,
                     k0 > 0, bias ? bias + p * G::MR : nullptr, last);
    }
}

}  // namespace medkern::cpu

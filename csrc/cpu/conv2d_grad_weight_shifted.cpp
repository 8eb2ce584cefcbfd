// Stride-1 grad-weight as dot products of contiguous rows:
//   dW[k, c, r, s] = sum over (image, output position) of dy[k, position] * x[c, position shifted by (r, s)].
// The GEMM path packs the shifted input into k-major panels for every (c, r, s): a transpose per element
// that cost as much as the multiply-adds when there are few output channels to share it (64x32x1000 -> 32
// k7: 45% of grad-weight). Here a block of output rows is first copied into a layout in which every
// shift is a plain offset, and each (k, c, r, s) is then a dot product of two contiguous rows.
//
// The layout: input rows W + pad_w long, the pad_w zeros after a row serving as the right padding of that
// row and the left padding of the next; images stacked with pad_h zero rows between them, which are the
// bottom padding of one and the top padding of the next (with unequal sides, the larger of the two). dy lies in the same grid, zero where no output
// position exists (the pad_w columns and pad_h rows per image: 3% of a 64x64 map, 0.3% of an ECG row).
// Output position (v, q) of that grid then reads tap (r, s) at flat offset (v + r*dil_h)*(W + pad_w) + q +
// s*dil_w, whatever the image.
#include "conv2d_grad_weight_shifted.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "simd.h"

namespace medkern::cpu {
namespace {

constexpr int kTileRows = 4;  // dy rows per register tile
constexpr int kTileCols = 6;  // shifted input rows per register tile: 24 accumulators + 4 dy vectors + 1

// The padded grid. Padding may differ between the two sides (torch's "same" padding of an even kernel):
// the zeros between two rows, or two images, cover the larger side.
struct ShiftedGrid {
  int64_t row_len;      // W + the larger of the left and right padding
  int64_t image_rows;   // H + the larger of the top and bottom padding: output rows per image, the first P real
  int64_t halo_rows;    // extra input rows a block of output rows reads: dil_h*(R-1), plus one for taps
                        // that run past a row's end into the next
  explicit ShiftedGrid(const Conv2dShape& s)
      : row_len(s.W + std::max(s.pad_w, trailing_pad(s.Q, s.S, s.dil_w, s.W, s.pad_w))),
        image_rows(s.H + std::max(s.pad_h, trailing_pad(s.P, s.R, s.dil_h, s.H, s.pad_h))),
        halo_rows(s.dil_h * (s.R - 1) + 1) {}
  // Padding after the input along one dimension of a stride-1 convolution (negative when outputs are cut).
  static int64_t trailing_pad(int64_t out, int64_t taps, int64_t dil, int64_t in, int64_t lead) {
    return out - 1 + dil * (taps - 1) + 1 - in - lead;
  }
};

// sums[i * cols + j] += dot(a[i], b[j]) over `steps` vectors, for a tile of at most kTileRows x kTileCols.
template <typename T, int MI, int NJ>
void dot_tile(const T* const* a, const T* const* b, int64_t steps, T* sums, int64_t ld) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc[MI * NJ];
  for (int i = 0; i < MI * NJ; ++i) acc[i] = V{};
  for (int64_t t = 0; t < steps; ++t) {
    V av[MI];
    for (int i = 0; i < MI; ++i) av[i] = Vec<T>::load(a[i] + t * L);
    for (int j = 0; j < NJ; ++j) {
      V bv = Vec<T>::load(b[j] + t * L);
      // Keeps the shifted (unaligned, often line-crossing) load in a register: GCC otherwise folds it
      // into each of the MI multiply-adds, loading it MI times (measured 1.6x slower).
      asm("" : "+x"(bv));
      for (int i = 0; i < MI; ++i) acc[i * NJ + j] += av[i] * bv;
    }
  }
  // Lane sums, L accumulators per reduction.
  for (int i0 = 0; i0 < MI * NJ; i0 += L) {
    V group[L];
    for (int l = 0; l < L; ++l) group[l] = i0 + l < MI * NJ ? acc[i0 + l] : V{};
    const V total = reduce_rows<T>(group);
    for (int l = 0; l < L && i0 + l < MI * NJ; ++l) sums[(i0 + l) / NJ * ld + (i0 + l) % NJ] += total[l];
  }
}

template <typename T, int MI>
void dot_tile_cols(int nj, const T* const* a, const T* const* b, int64_t steps, T* sums, int64_t ld) {
  switch (nj) {
    case 6: return dot_tile<T, MI, 6>(a, b, steps, sums, ld);
    case 5: return dot_tile<T, MI, 5>(a, b, steps, sums, ld);
    case 4: return dot_tile<T, MI, 4>(a, b, steps, sums, ld);
    case 3: return dot_tile<T, MI, 3>(a, b, steps, sums, ld);
    case 2: return dot_tile<T, MI, 2>(a, b, steps, sums, ld);
    default: return dot_tile<T, MI, 1>(a, b, steps, sums, ld);
  }
}

template <typename T>
void dot_tile_any(int mi, int nj, const T* const* a, const T* const* b, int64_t steps, T* sums, int64_t ld) {
  static_assert(kTileRows == 4 && kTileCols == 6, "the switches below enumerate the tile sizes");
  switch (mi) {
    case 4: return dot_tile_cols<T, 4>(nj, a, b, steps, sums, ld);
    case 3: return dot_tile_cols<T, 3>(nj, a, b, steps, sums, ld);
    case 2: return dot_tile_cols<T, 2>(nj, a, b, steps, sums, ld);
    default: return dot_tile_cols<T, 1>(nj, a, b, steps, sums, ld);
  }
}

// Copies grid rows [v0, v0 + rows) of dy (Kg channels of group g) and the input rows they read (Cg
// channels) into dy_buf (Kg x positions) and x_buf (Cg x x_len), zero wherever the grid has no element.
template <typename T>
void copy_block(const Conv2dShape& s, const ShiftedGrid& grid, const T* x, const T* dy, int64_t g, int64_t v0,
                int64_t rows, int64_t positions, int64_t x_len, T* dy_buf, T* x_buf) {
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), len = grid.row_len;
  for (int64_t k = 0; k < Kg; ++k) {
    T* d = dy_buf + k * positions;
    std::fill(d, d + positions, T(0));
    for (int64_t v = v0; v < v0 + rows; ++v) {
      const int64_t n = v / grid.image_rows, oh = v % grid.image_rows;
      if (n < s.N && oh < s.P)
        std::memcpy(d + (v - v0) * len, dy + ((n * s.K + g * Kg + k) * s.P + oh) * s.Q, s.Q * sizeof(T));
    }
  }
  // Input grid row u holds image n's row ih = u - pad_h - n*image_rows (when that is one), from column pad_w.
  const int64_t x_rows = std::min(x_len / len + 1, rows + grid.halo_rows + 1);
  for (int64_t c = 0; c < Cg; ++c) {
    T* d = x_buf + c * x_len;
    std::fill(d, d + x_len, T(0));
    for (int64_t u = v0; u < v0 + x_rows; ++u) {
      const int64_t shifted = u - s.pad_h;
      if (shifted < 0) continue;
      const int64_t n = shifted / grid.image_rows, ih = shifted % grid.image_rows;
      const int64_t at = (u - v0) * len + s.pad_w;
      if (n < s.N && ih < s.H && at < x_len)
        std::memcpy(d + at, x + ((n * s.C + g * Cg + c) * s.H + ih) * s.W,
                    std::min(s.W, x_len - at) * sizeof(T));
    }
  }
}

}  // namespace

template <typename T>
bool grad_weight_shifted_applies(const Conv2dShape& s) {
  if (s.stride_h != 1 || s.stride_w != 1) return false;
  const ShiftedGrid grid(s);
  // Padding wider than the kernel's reach would give an image more output rows (or a row more outputs)
  // than its share of the grid.
  if (s.P > grid.image_rows || s.Q > grid.row_len) return false;
  // Grid positions without an output cost multiply-adds like real ones. Measured against the packed GEMM
  // (3x3, pad 1): 7x7 maps (64 grid cells for 49 outputs) and 8x8 ran 1.3-1.7x faster here, 5x5 (36 for
  // 25) and 4x4 (25 for 16) 1.1-1.6x slower.
  return 20 * grid.image_rows * grid.row_len <= 27 * s.P * s.Q;
}

template <typename T>
void conv2d_grad_weight_shifted(const Conv2dShape& s, const T* x, const T* dy, T* dw) {
  constexpr int L = Vec<T>::lanes;
  const ShiftedGrid grid(s);
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), RS = s.R * s.S;
  const int64_t total_rows = s.N * grid.image_rows;
  const int64_t multiply_adds = s.N * s.K * s.P * s.Q * CRS;
  const int threads = multiply_adds >= (int64_t(1) << 18) ? omp_get_max_threads() : 1;
  // A block's input rows stay in L2 while every dy row passes over them: about 512 KiB of them, and at
  // least a few thousand positions so that the lane sums at the end of each tile stay a few percent.
  const int64_t budget = std::max<int64_t>(4096, (int64_t(512) << 10) / (Cg * int64_t(sizeof(T))));
  int64_t blocks = ceil_div(total_rows * grid.row_len, budget);
  blocks = std::min(total_rows, ceil_div(blocks, threads) * threads);  // whole rounds of the threads
  const int64_t rows_per_block = ceil_div(total_rows, blocks);
  blocks = ceil_div(total_rows, rows_per_block);
  const int64_t positions = ceil_div(rows_per_block * grid.row_len, L) * L;
  const int64_t x_len = ceil_div(positions + grid.halo_rows * grid.row_len + s.dil_w * (s.S - 1), L) * L;
  const int64_t dw_size = s.K * CRS, tasks = s.groups * blocks;
  std::vector<T> partial(static_cast<size_t>(threads) * dw_size, T(0));
#pragma omp parallel num_threads(threads)
  {
    Buffer<T> dy_buf = alloc_buffer<T>(Kg * positions);
    Buffer<T> x_buf = alloc_buffer<T>(Cg * x_len);
    T* mine = partial.data() + omp_get_thread_num() * dw_size;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t g = t / blocks, v0 = (t % blocks) * rows_per_block;
      const int64_t rows = std::min(rows_per_block, total_rows - v0);
      const int64_t steps = ceil_div(rows * grid.row_len, L);
      copy_block(s, grid, x, dy, g, v0, rows, positions, x_len, dy_buf.get(), x_buf.get());
      const T* a[kTileRows];
      const T* b[kTileCols];
      for (int64_t k0 = 0; k0 < Kg; k0 += kTileRows) {
        const int mi = static_cast<int>(std::min<int64_t>(kTileRows, Kg - k0));
        for (int i = 0; i < mi; ++i) a[i] = dy_buf.get() + (k0 + i) * positions;
        for (int64_t j0 = 0; j0 < CRS; j0 += kTileCols) {
          const int nj = static_cast<int>(std::min<int64_t>(kTileCols, CRS - j0));
          for (int j = 0; j < nj; ++j) {
            const int64_t crs = j0 + j, r = crs % RS / s.S, sx = crs % s.S;
            b[j] = x_buf.get() + (crs / RS) * x_len + r * s.dil_h * grid.row_len + sx * s.dil_w;
          }
          dot_tile_any<T>(mi, nj, a, b, steps, mine + (g * Kg + k0) * CRS + j0, CRS);
        }
      }
    }
  }
  // Copies added in thread order: deterministic for a given thread count.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < dw_size; ++i) {
    T sum = T(0);
    for (int t = 0; t < threads; ++t) sum += partial[t * dw_size + i];
    dw[i] = sum;
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                   \
  template bool grad_weight_shifted_applies<T>(const Conv2dShape&);                             \
  template void conv2d_grad_weight_shifted<T>(const Conv2dShape&, const T*, const T*, T*);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

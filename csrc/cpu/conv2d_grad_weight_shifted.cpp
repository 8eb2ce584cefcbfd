// Grad-weight as dot products of contiguous rows:
//   dW[k, c, r, s] = sum over (image, output position) of dy[k, position] * x[c, position shifted by (r, s)].
// The GEMM path packs the shifted input into k-major panels for every (c, r, s): a transpose per element
// that cost as much as the multiply-adds when there are few output channels to share it (64x32x1000 -> 32
// k7: 45% of grad-weight). Here a block of grid rows (conv2d_shifted_grid.h) is copied once into the
// padded grid, dy into the same grid (zero where no output exists), and each (k, c, r, s) is then a dot
// product of a dy row with a shifted input row, vectorised along positions with a 4 x 6 register tile and
// reduced across lanes once per block.
#include "conv2d_grad_weight_shifted.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d_shifted_grid.h"
#include "simd.h"
#include "threading.h"

namespace medkern::cpu {
namespace {

constexpr int kTileRows = 4;  // dy rows per register tile
constexpr int kTileCols = 6;  // shifted input rows per register tile: 24 accumulators + 4 dy vectors + 1

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

}  // namespace

template <typename T>
void conv2d_grad_weight_shifted(const ConvShape& s, const T* x, const T* dy, T* dw) {
  constexpr int L = Vec<T>::lanes;
  const ShiftedGrid grid(s);
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs();
  const int64_t multiply_adds = s.N * s.K * s.P * s.Q * CRS;
  const int threads = threads_for(multiply_adds);
  // A block's input planes stay in L2 while every dy row passes over them: about 512 KiB of them, and at
  // least a few thousand positions so that the lane sums at the end of each tile stay a few percent.
  const int64_t cells = std::max<int64_t>(4096, (int64_t(512) << 10) / (Cg * grid.planes() * int64_t(sizeof(T))));
  const GridBlocks blocks(grid, s.N, cells, threads, L);
  const std::vector<int64_t> off = tap_offsets(s, grid, blocks);
  const int64_t dw_size = s.K * CRS, tasks = s.groups * blocks.blocks;
  const Buffer<T> partial = alloc_buffer<T>(threads * dw_size);
#pragma omp parallel num_threads(threads)
  {
    Buffer<T> dy_buf = alloc_buffer<T>(Kg * blocks.positions);
    Buffer<T> x_buf = alloc_buffer<T>(Cg * grid.planes() * blocks.x_len);
    T* mine = partial.get() + omp_get_thread_num() * dw_size;
    std::fill(mine, mine + dw_size, T(0));  // each thread its own copy (zeroed serially, it idled the other)
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t g = t / blocks.blocks, block = t % blocks.blocks, v0 = blocks.first_row(block);
      const int64_t rows = blocks.rows(block), steps = ceil_div(rows * grid.w.len, L);
      copy_grad_output(s, grid, dy, g, v0, rows, int64_t(0), blocks.positions, dy_buf.get());
      copy_input_planes(s, grid, blocks, x, g, v0, x_buf.get());
      const T* a[kTileRows];
      const T* b[kTileCols];
      for (int64_t k0 = 0; k0 < Kg; k0 += kTileRows) {
        const int mi = static_cast<int>(std::min<int64_t>(kTileRows, Kg - k0));
        for (int i = 0; i < mi; ++i) a[i] = dy_buf.get() + (k0 + i) * blocks.positions;
        for (int64_t j0 = 0; j0 < CRS; j0 += kTileCols) {
          const int nj = static_cast<int>(std::min<int64_t>(kTileCols, CRS - j0));
          for (int j = 0; j < nj; ++j) b[j] = x_buf.get() + off[j0 + j];
          dot_tile_any<T>(mi, nj, a, b, steps, mine + (g * Kg + k0) * CRS + j0, CRS);
        }
      }
    }
    // After the loop's barrier, the copies added in thread order: deterministic for a given thread count.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < dw_size; ++i) {
      T sum = T(0);
      for (int t = 0; t < threads; ++t) sum += partial[t * dw_size + i];
      dw[i] = sum;
    }
  }
}

template void conv2d_grad_weight_shifted<float>(const ConvShape&, const float*, const float*, float*);
template void conv2d_grad_weight_shifted<double>(const ConvShape&, const double*, const double*, double*);

}  // namespace medkern::cpu

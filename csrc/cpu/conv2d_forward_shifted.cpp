// Forward convolution over the padded grid (conv2d_shifted_grid.h): the implicit GEMM of conv2d.cpp
// without packing B. Over a block of grid positions, the im2col row of tap (c, r, s) is a contiguous run
// of the tap's input plane, so the micro-kernel loads each reduction step's NR columns straight from the
// planes at the tap's offset. Packing had cost more than the multiply-adds where few output channels
// share each packed element or strided taps make it a gather (16x3x32x32 -> 16 k4 s2: 220 us against a
// 27 us FLOP floor).
#include "conv2d_forward_shifted.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d_shifted_grid.h"
#include "simd.h"
#include "threading.h"

namespace medkern::cpu {

template <typename T>
void conv2d_forward_shifted(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, const Epilogue<T>& ep) {
  using G = GemmTile<T>;
  constexpr int MR = G::MR;
  const ShiftedGrid grid(s);
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), panels = ceil_div(Kg, MR);
  const int threads = threads_for(s.N * s.K * s.P * s.Q * CRS);
  // A block's input planes and outputs stay in L2: about 512 KiB of them (at 1024 cells, the 256 planes
  // of 32x64x32x32 -> 64 k3 s2 took 1.1 MiB and ran 20% slower).
  const int64_t per_cell = (Cg * grid.planes() + panels * MR) * int64_t(sizeof(T));
  const int64_t cells = std::clamp<int64_t>((int64_t(512) << 10) / per_cell, 4 * G::NR, 16384);
  const GridBlocks blocks(grid, s.N, cells, threads, G::NR);
  const std::vector<int64_t> off = tap_offsets(s, grid, blocks);
  // Weights as MR-row panels, k-major over the whole reduction, zero rows past Kg.
  std::vector<T> packed(static_cast<size_t>(s.groups * panels * MR * CRS), T(0));
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t crs = 0; crs < CRS; ++crs)
        packed[((g * panels + k / MR) * CRS + crs) * MR + k % MR] = w[(g * Kg + k) * CRS + crs];
  std::vector<T> bias_rows(static_cast<size_t>(s.groups * panels * MR), T(0));
  if (bias) for (int64_t g = 0; g < s.groups; ++g) std::copy(bias + g * Kg, bias + (g + 1) * Kg, &bias_rows[g * panels * MR]);
  const int64_t tasks = s.groups * blocks.blocks;
#pragma omp parallel num_threads(threads)
  {
    Buffer<T> x_buf = alloc_buffer<T>(Cg * grid.planes() * blocks.x_len);
    Buffer<T> y_buf = alloc_buffer<T>(panels * MR * blocks.positions);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t g = t / blocks.blocks, block = t % blocks.blocks, v0 = blocks.first_row(block);
      const int64_t rows = blocks.rows(block), cols = rows * grid.w.len;
      copy_input_planes(s, grid, blocks, x, g, v0, x_buf.get());
      grid_gemm<T>(panels, CRS, packed.data() + g * panels * CRS * MR, x_buf.get(), off.data(), cols, y_buf.get(),
                   blocks.positions, bias ? bias_rows.data() + g * panels * MR : nullptr, ep);
      for_each_output_row(s, grid, v0, rows, [&](int64_t n, int64_t oh, int64_t at) {
        for (int64_t k = 0; k < Kg; ++k) {
          T* dst = y + ((n * s.K + g * Kg + k) * s.P + oh) * s.Q;
          const T* src = y_buf.get() + k * blocks.positions + at;
          if (ep.streaming) copy_streaming(dst, src, s.Q);
          else std::memcpy(dst, src, s.Q * sizeof(T));
        }
      });
    }
  }
}

template void conv2d_forward_shifted<float>(const ConvShape&, const float*, const float*, const float*, float*,
                                            const Epilogue<float>&);
template void conv2d_forward_shifted<double>(const ConvShape&, const double*, const double*, const double*,
                                             double*, const Epilogue<double>&);

}  // namespace medkern::cpu

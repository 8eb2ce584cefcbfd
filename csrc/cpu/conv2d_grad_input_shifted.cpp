// Grad-input over the padded grid (conv2d_shifted_grid.h), the adjoint of conv2d_forward_shifted.cpp. The
// forward reads cell F of a tap's input plane from output position F - off(tap) of the grid; so, plane by
// plane, dx's cells are
//   dx_plane[c, F] = sum over k and the plane's taps of w[k, c, tap] * dy_grid[k, F - off(tap)],
// a GEMM whose B rows are runs of dy laid out in the grid (zero where no output exists), read backwards
// from each cell by the tap's offset. Grid positions whose read wraps past a row's start land on outputs
// past the row's end, which are zero: exactly the pairs the forward never makes. The cells holding input
// elements are then copied to dx; the rest of the plane (padding) is dropped, and input elements of a
// phase that no tap reads get zero.
//
// For strided convolutions this replaces one stride-1 convolution per phase (each packed) or GEMM + col2im
// (a CRS x positions scratch added back element by element).
#include "conv2d_grad_input_shifted.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv2d_shifted_grid.h"
#include "simd.h"
#include "threading.h"

namespace medkern::cpu {
namespace {

// The taps (r * S + s) of plane (ph, pw).
std::vector<int64_t> plane_taps(const ConvShape& s, const ShiftedGrid& grid, int64_t ph, int64_t pw) {
  std::vector<int64_t> taps;
  for (int64_t r = 0; r < s.R; ++r)
    for (int64_t sx = 0; sx < s.S; ++sx)
      if (grid.h.tap_plane[r] == ph && grid.w.tap_plane[sx] == pw) taps.push_back(r * s.S + sx);
  return taps;
}

// The input elements among plane (ph, pw)'s cells of grid rows [v0, v0 + rows), from out[c * ldc + cell],
// to dx.
template <typename T>
void copy_plane_to_input(const ConvShape& s, const ShiftedGrid& grid, int64_t ph, int64_t pw, const T* out,
                         int64_t ldc, int64_t g, int64_t v0, int64_t rows, T* dx) {
  const int64_t Cg = s.c_per_group(), len = grid.w.len, j0 = grid.w.lead[pw], cols = grid.w.count[pw];
  const int64_t phase_w = grid.w.phase[pw], n_end = std::min(s.N, (v0 + rows) / grid.h.len + 1);
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t n = std::max<int64_t>(0, v0 / grid.h.len - 1); n < n_end; ++n)
      for (int64_t i = grid.h.lead[ph]; i < grid.h.lead[ph] + grid.h.count[ph]; ++i) {
        const int64_t u = n * grid.h.len + i;
        if (u < v0 || u >= v0 + rows) continue;
        const int64_t ih = i * s.stride_h + grid.h.phase[ph] - s.pad_h;
        T* dst = dx + ((n * s.C + g * Cg + c) * s.H + ih) * s.W + j0 * s.stride_w + phase_w - s.pad_w;
        const T* src = out + c * ldc + (u - v0) * len + j0;
        for (int64_t j = 0; j < cols; ++j) dst[j * s.stride_w] = src[j];
      }
}

}  // namespace

template <typename T>
void conv2d_grad_input_shifted(const ConvShape& s, const T* dy, const T* w, T* dx) {
  using G = GemmTile<T>;
  constexpr int MR = G::MR;
  const ShiftedGrid grid(s);
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), RS = s.R * s.S, panels = ceil_div(Cg, MR);
  const int64_t len = grid.w.len;
  const int threads = threads_for(s.N * s.K * s.P * s.Q * s.crs());
  // Input elements of a phase that no tap reads (a 1x1 kernel with stride 2) get no plane.
  if (grid.planes() < s.stride_h * s.stride_w) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < s.N * s.C; ++i) std::fill_n(dx + i * s.H * s.W, s.H * s.W, T(0));
  }
  // A block's dy runs and one plane's outputs stay in L2: about 512 KiB of them.
  const int64_t per_cell = (Kg + panels * MR) * int64_t(sizeof(T));
  const int64_t cells = std::clamp<int64_t>((int64_t(512) << 10) / per_cell, 4 * G::NR, 16384);
  const GridBlocks blocks(grid, s.N, cells, threads, G::NR);
  // dy rows above the block that its cells read back to: the largest tap offset.
  const int64_t halo_rows = grid.h.max_shift + ceil_div(grid.w.max_shift, len);
  const int64_t y_len = halo_rows * len + blocks.positions;
  // Per plane and group: the reduction (k, tap) as offsets into the block's dy runs, and the weights
  // w[k, c, tap] as MR-row panels over c, k-major (packed by the threads, below).
  struct Plane { int64_t ph, pw, steps; std::vector<int64_t> taps, off; Buffer<T> packed; };
  std::vector<Plane> planes;
  for (int64_t ph = 0; ph < grid.h.planes; ++ph)
    for (int64_t pw = 0; pw < grid.w.planes; ++pw) {
      std::vector<int64_t> taps = plane_taps(s, grid, ph, pw);
      const int64_t steps = Kg * static_cast<int64_t>(taps.size());
      Plane p{ph, pw, steps, std::move(taps), {}, alloc_buffer<T>(s.groups * panels * steps * MR)};
      for (int64_t k = 0; k < Kg; ++k)
        for (const int64_t tap : p.taps) {
          const int64_t r = tap / s.S, sx = tap % s.S;
          p.off.push_back(k * y_len + halo_rows * len - grid.h.tap_shift[r] * len - grid.w.tap_shift[sx]);
        }
      planes.push_back(std::move(p));
    }
  const int64_t tasks = s.groups * blocks.blocks, plane_panels = s.groups * panels;
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < static_cast<int64_t>(planes.size()) * plane_panels; ++t) {
      const Plane& p = planes[t / plane_panels];
      const int64_t g = t % plane_panels / panels, c0 = t % panels * MR, ntaps = static_cast<int64_t>(p.taps.size());
      T* dst = p.packed.get() + (t % plane_panels) * p.steps * MR;
      for (int64_t k = 0; k < Kg; ++k)
        for (int64_t i = 0; i < ntaps; ++i)
          for (int m = 0; m < MR; ++m)
            dst[(k * ntaps + i) * MR + m] = c0 + m < Cg ? w[((g * Kg + k) * Cg + c0 + m) * RS + p.taps[i]] : T(0);
    }
    Buffer<T> dy_buf = alloc_buffer<T>(Kg * y_len);
    Buffer<T> out = alloc_buffer<T>(panels * MR * blocks.positions);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t g = t / blocks.blocks, block = t % blocks.blocks, v0 = blocks.first_row(block);
      const int64_t rows = blocks.rows(block);
      copy_grad_output(s, grid, dy, g, v0, rows, halo_rows, y_len, dy_buf.get());
      for (const Plane& p : planes) {
        grid_gemm<T>(panels, p.steps, p.packed.get() + g * panels * p.steps * MR, dy_buf.get(), p.off.data(),
                     rows * len, out.get(), blocks.positions, nullptr, Epilogue<T>{});
        copy_plane_to_input(s, grid, p.ph, p.pw, out.get(), blocks.positions, g, v0, rows, dx);
      }
    }
  }
}

template void conv2d_grad_input_shifted<float>(const ConvShape&, const float*, const float*, float*);
template void conv2d_grad_input_shifted<double>(const ConvShape&, const double*, const double*, double*);

}  // namespace medkern::cpu

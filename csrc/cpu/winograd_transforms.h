#pragma once
// Winograd's transform matrices (B^T for the input, G for the kernel, A^T for the output) of the schemes the
// forward kernels use, and their application with every coefficient a constant. Shared by the column-panel
// kernels (conv2d_winograd.cpp) and the channel-panel one (conv2d_winograd_panels.cpp).
#include "conv_plan.h"

namespace medkern::cpu {

struct F2x3 {
  static constexpr int m = 2, r = 3, a = 4, stride = 1;
  static constexpr double BT[a][a] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[a][r] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double AT[m][a] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

// F(4x4, 3x3) for 3x3 stride-1 layers with large enough maps: 36 products per 4x4 block of outputs (2.25 per
// output, against 4 for F(2x2, 3x3) and 9 direct). Interpolation points 0, 1, -1, 2, -2 and infinity.
struct F4x3 {
  static constexpr int m = 4, r = 3, a = 6, stride = 1;
  static constexpr double BT[a][a] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double G[a][r] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  static constexpr double AT[m][a] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

// Interpolation points 0, -1 and infinity: every coefficient is 0 or +-1.
struct F2x2 {
  static constexpr int m = 2, r = 2, a = 3, stride = 2;
  static constexpr double BT[a][a] = {{1, 1, 0}, {0, 1, 0}, {0, 1, 1}};
  static constexpr double G[a][r] = {{1, 0}, {-1, 1}, {0, 1}};
  static constexpr double AT[m][a] = {{1, 1, 0}, {0, -1, 1}};
};

// Interpolation points 0, 1, -1, 2, -2, 1/2 and infinity.
struct F4x4 {
  static constexpr int m = 4, r = 4, a = 7, stride = 2;
  static constexpr double BT[a][a] = {{-2, 4, 2.5, -5, -0.5, 1, 0}, {0, 2, -2, -4.5, 0.5, 1, 0},
                                      {0, -2, 6, -3.5, -1.5, 1, 0}, {0, 1, -1.5, -2, 1.5, 1, 0},
                                      {0, -1, 2.5, 0, -2.5, 1, 0},  {0, 4, 0, -5, 0, 1, 0},
                                      {0, -2, 4, 2.5, -5, -0.5, 1}};
  static constexpr double G[a][r] = {{-1.0 / 2, 0, 0, 0},
                                     {-1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3},
                                     {1.0 / 9, -1.0 / 9, 1.0 / 9, -1.0 / 9},
                                     {1.0 / 36, 1.0 / 18, 1.0 / 9, 2.0 / 9},
                                     {-1.0 / 60, 1.0 / 30, -1.0 / 15, 2.0 / 15},
                                     {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45},
                                     {0, 0, 0, 1}};
  static constexpr double AT[m][a] = {{1, 1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0.5, 0},
                                      {0, 1, 1, 4, 4, 0.25, 0}, {0, 1, -1, 8, -8, 0.125, 1}};
};

template <class F>
constexpr bool matches(const WinogradTile& t) { return F::m == t.m && F::a == t.a && F::stride == t.stride; }
static_assert(matches<F2x3>(kWinogradF2x3) && matches<F4x3>(kWinogradF4x3) && matches<F4x4>(kWinogradF4x4) &&
                  matches<F2x2>(kWinogradF2x2),
              "the planner's cost model (conv_plan.h) counts these tiles");

// out[i] = sum_j c[i][j] * in[j] for a transform matrix c, unrolled so that every coefficient is a
// constant: zero terms are skipped (x * 0 does not fold away: NaN, infinity) and +-1 become additions.
template <typename T, int Rows, int Cols, class X>
inline void apply(const double (&c)[Rows][Cols], const X* in, X* out) {
#pragma GCC unroll 8
  for (int i = 0; i < Rows; ++i) {
    X acc{};
    bool first = true;
#pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j) {
      const double k = c[i][j];
      if (k == 0) continue;
      const X term = k == 1 ? in[j] : k == -1 ? -in[j] : in[j] * static_cast<T>(k);
      acc = first ? term : acc + term;
      first = false;
    }
    out[i] = acc;
  }
}

// out = C (x) in along every axis of a Cols^Dims block (row-major), giving Rows^Dims: one pass per axis, each
// transforming the last axis and moving it to the front, so that after Dims passes the axes are back in order.
template <typename T, int Dims, int Rows, int Cols, class X>
void transform_nd(const double (&c)[Rows][Cols], const X* in, X* out) {
  constexpr int kMax = Rows > Cols ? Rows : Cols;
  X buffers[2][Dims == 1 ? 1 : kMax * kMax * (Dims == 3 ? kMax : 1)];
  const X* src = in;
  int lines = 1;  // the product of the other axes' extents: Rows for each axis done, Cols for each not
  for (int d = 1; d < Dims; ++d) lines *= Cols;
#pragma GCC unroll 3
  for (int pass = 0; pass < Dims; ++pass) {
    X* dst = pass == Dims - 1 ? out : buffers[pass % 2];
    for (int line = 0; line < lines; ++line) {
      X res[Rows];
      apply<T>(c, src + line * Cols, res);
      for (int r = 0; r < Rows; ++r) dst[r * lines + line] = res[r];
    }
    src = dst;
    if (pass < Dims - 1) lines = lines / Cols * Rows;
  }
}

}  // namespace medkern::cpu

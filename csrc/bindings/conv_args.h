#pragma once
// Argument checking shared by the CPU and CUDA convolution bindings and the planner's binding: turns
// extents (or DLPack views) plus the geometry into a ConvShape, refusing anything a kernel could not index
// safely.
#include <array>
#include <string>

#include "../common/conv_params.h"
#include "tensor_view.h"

namespace medkern {

// Per spatial axis, in the order depth, height, width.
struct ConvGeometry {
  std::array<int64_t, 3> stride{1, 1, 1}, pad{0, 0, 0}, dil{1, 1, 1};
  int64_t groups = 1;
};

// A 2-d call's geometry: depth stride and dilation 1, no depth padding.
inline ConvGeometry planar_geometry(int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                    int64_t groups) {
  return ConvGeometry{{1, sh, sw}, {0, ph, pw}, {1, dh, dw}, groups};
}

inline void check_geometry(const ConvGeometry& g) {
  // Kernels form products such as o*stride + r*dilation in int64; bounding every factor by 2^30 keeps
  // each sum of two products far from overflow.
  constexpr int64_t kMax = int64_t(1) << 30;
  for (int i = 0; i < 3; ++i) {
    if (g.stride[i] < 1) fail_value("stride: must be positive");
    if (g.dil[i] < 1) fail_value("dilation: must be positive");
    if (g.pad[i] < 0) fail_value("padding: must be non-negative");
    if (g.stride[i] > kMax) fail_value("stride: too large");
    if (g.dil[i] > kMax) fail_value("dilation: too large");
    if (g.pad[i] > kMax) fail_value("padding: too large");
  }
  if (g.groups < 1) fail_value("groups: must be positive");
  if (g.groups > kMax) fail_value("groups: too large");
}

// x: N, C, D, H, W; w: K, C/groups, T, R, S; out: O, P, Q. Any positive output extent is well defined
// (positions past the input read zeros), so only that is required of it; the ops layer derives the
// extents from torch's padding rules.
inline ConvShape make_conv_shape(const std::array<int64_t, 5>& x, const std::array<int64_t, 5>& w,
                                 const std::array<int64_t, 3>& out, const ConvGeometry& g,
                                 const char* x_name = "input", const char* w_name = "weight") {
  check_geometry(g);
  ConvShape s{};
  s.N = x[0]; s.C = x[1]; s.D = x[2]; s.H = x[3]; s.W = x[4];
  s.K = w[0]; s.T = w[2]; s.R = w[3]; s.S = w[4];
  s.O = out[0]; s.P = out[1]; s.Q = out[2];
  s.stride_d = g.stride[0]; s.stride_h = g.stride[1]; s.stride_w = g.stride[2];
  s.pad_d = g.pad[0]; s.pad_h = g.pad[1]; s.pad_w = g.pad[2];
  s.dil_d = g.dil[0]; s.dil_h = g.dil[1]; s.dil_w = g.dil[2];
  s.groups = g.groups;
  if (s.N < 1 || s.C < 1 || s.D < 1 || s.H < 1 || s.W < 1)
    fail_value(std::string(x_name) + ": every size must be positive");
  if (s.K < 1 || s.T < 1 || s.R < 1 || s.S < 1) fail_value(std::string(w_name) + ": every size must be positive");
  if (s.C % s.groups != 0) fail_value("groups: must divide the input channels");
  if (s.K % s.groups != 0) fail_value("groups: must divide the output channels");
  if (w[1] != s.C / s.groups)
    fail_value(std::string(w_name) + ": expected " + std::to_string(s.C / s.groups) +
               " input channels per group, got " + std::to_string(w[1]));
  constexpr int64_t kMaxDim = int64_t(1) << 31;  // with the geometry bound, index products stay < 2^62
  for (int64_t d : {s.C, s.D, s.H, s.W, s.K, s.T, s.R, s.S, s.O, s.P, s.Q})
    if (d > kMaxDim) fail_value("a dimension of 2^31 or more is not supported");
  if (s.O < 1) fail_value("depth: output size must be positive");
  if (s.P < 1) fail_value("height: output size must be positive");
  if (s.Q < 1) fail_value("width: output size must be positive");
  return s;
}

// A call's tensors are of rank 4 (a 2-d convolution: N, C, H, W) or 5 (3-d: N, C, D, H, W); a 2-d call is seen as
// a volume of depth 1. x and w (K x C/groups x [T x] R x S) must have that rank; the output extents are the
// spatial sizes of `out` (the output, or its gradient).
inline ConvShape make_conv_shape_of(const TensorView& x, const TensorView& w, const TensorView& out, int rank,
                                    const ConvGeometry& g, const char* x_name, const char* w_name,
                                    const char* out_name) {
  expect_rank(x, rank, x_name);
  expect_rank(w, rank, w_name);
  expect_rank(out, rank, out_name);
  expect_same(w, x, w_name);
  const auto& a = x.shape;
  const auto& b = w.shape;
  const auto& o = out.shape;
  if (rank == 4)
    return make_conv_shape({a[0], a[1], 1, a[2], a[3]}, {b[0], b[1], 1, b[2], b[3]}, {1, o[2], o[3]}, g, x_name,
                           w_name);
  return make_conv_shape({a[0], a[1], a[2], a[3], a[4]}, {b[0], b[1], b[2], b[3], b[4]}, {o[2], o[3], o[4]}, g,
                         x_name, w_name);
}

// `v` has the shape of the output (or its gradient) of the convolution s describes, at `rank`.
inline void expect_conv_output_shape(const TensorView& v, const ConvShape& s, int rank, const char* name) {
  if (rank == 4) expect_shape(v, {s.N, s.K, s.P, s.Q}, name);
  else expect_shape(v, {s.N, s.K, s.O, s.P, s.Q}, name);
}

}  // namespace medkern

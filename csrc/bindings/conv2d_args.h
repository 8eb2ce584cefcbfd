#pragma once
// Argument checking shared by the CPU and CUDA conv2d bindings: turns DLPack views plus the geometry
// into a Conv2dShape, refusing anything a kernel could not index safely.
#include <string>

#include "../common/conv2d_params.h"
#include "tensor_view.h"

namespace medkern {

struct Conv2dGeometry {
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
};

inline void check_geometry(const Conv2dGeometry& g) {
  if (g.stride_h < 1 || g.stride_w < 1) fail_value("stride: must be positive");
  if (g.dil_h < 1 || g.dil_w < 1) fail_value("dilation: must be positive");
  if (g.pad_h < 0 || g.pad_w < 0) fail_value("padding: must be non-negative");
  if (g.groups < 1) fail_value("groups: must be positive");
  // Kernels form products such as o*stride + r*dilation in int64; bounding every factor by 2^30 keeps
  // each sum of two products far from overflow.
  constexpr int64_t kMax = int64_t(1) << 30;
  if (g.stride_h > kMax || g.stride_w > kMax) fail_value("stride: too large");
  if (g.dil_h > kMax || g.dil_w > kMax) fail_value("dilation: too large");
  if (g.pad_h > kMax || g.pad_w > kMax) fail_value("padding: too large");
  if (g.groups > kMax) fail_value("groups: too large");
}

// Any positive output extent is well defined (positions past the input read zeros), so only that is
// required; the ops layer derives the extent from torch's padding rules.
inline void check_extent(int64_t out, const char* what) {
  if (out < 1) fail_value(std::string(what) + ": output size must be positive");
}

// x: N x C x H x W, w: K x C/groups x R x S, spatial output P x Q.
inline Conv2dShape make_conv2d_shape(const TensorView& x, const TensorView& w, int64_t P, int64_t Q,
                                     const Conv2dGeometry& g, const char* x_name = "input",
                                     const char* w_name = "weight") {
  check_geometry(g);
  expect_rank(x, 4, x_name);
  expect_rank(w, 4, w_name);
  expect_same(w, x, w_name);
  Conv2dShape s{};
  s.N = x.shape[0]; s.C = x.shape[1]; s.H = x.shape[2]; s.W = x.shape[3];
  s.K = w.shape[0]; s.R = w.shape[2]; s.S = w.shape[3];
  s.P = P; s.Q = Q;
  s.stride_h = g.stride_h; s.stride_w = g.stride_w;
  s.pad_h = g.pad_h; s.pad_w = g.pad_w;
  s.dil_h = g.dil_h; s.dil_w = g.dil_w;
  s.groups = g.groups;
  if (s.N < 1 || s.C < 1 || s.H < 1 || s.W < 1) fail_value(std::string(x_name) + ": every size must be positive");
  if (s.K < 1 || s.R < 1 || s.S < 1) fail_value(std::string(w_name) + ": every size must be positive");
  if (s.C % s.groups != 0) fail_value("groups: must divide the input channels");
  if (s.K % s.groups != 0) fail_value("groups: must divide the output channels");
  if (w.shape[1] != s.C / s.groups)
    fail_value(std::string(w_name) + ": expected " + std::to_string(s.C / s.groups) +
               " input channels per group, got " + std::to_string(w.shape[1]));
  constexpr int64_t kMaxDim = int64_t(1) << 31;  // with the geometry bound, index products stay < 2^62
  for (int64_t d : {s.C, s.H, s.W, s.K, s.R, s.S, s.P, s.Q})
    if (d > kMaxDim) fail_value("a dimension of 2^31 or more is not supported");
  check_extent(s.P, "height");
  check_extent(s.Q, "width");
  return s;
}

}  // namespace medkern

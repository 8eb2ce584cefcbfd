#pragma once
// One params struct for the conv2d family: sizes, geometry and raw pointers. Every tensor is dense NCHW
// (weights: Cout x Cin/groups x R x S); the bindings check that before a kernel sees the pointers.
#include <cstdint>
#include "macros.h"

namespace medkern {

struct Conv2dShape {
  int64_t N, C, H, W;        // input
  int64_t K, R, S;           // output channels, kernel height, kernel width
  int64_t P, Q;              // output height, width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;      // leading padding; trailing padding is implied by P and Q
  int64_t dil_h, dil_w;
  int64_t groups;

  MEDKERN_HD int64_t c_per_group() const { return C / groups; }
  MEDKERN_HD int64_t k_per_group() const { return K / groups; }
  // Length of the reduction of one output element: Cin/groups * R * S.
  MEDKERN_HD int64_t crs() const { return c_per_group() * R * S; }
};

// Input row (or column) read by output position `o` and kernel tap `r`; may fall in the padding.
MEDKERN_HD int64_t conv_in_coord(int64_t o, int64_t r, int64_t stride, int64_t pad, int64_t dil) {
  return o * stride - pad + r * dil;
}

// Output position that reads input coordinate `i` through kernel tap `r`, or -1 when none does
// (i + pad - r*dil is not a multiple of the stride, or lands outside [0, out_size)).
MEDKERN_HD int64_t conv_out_coord(int64_t i, int64_t r, int64_t stride, int64_t pad, int64_t dil,
                                  int64_t out_size) {
  const int64_t t = i + pad - r * dil;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t o = t / stride;
  return o < out_size ? o : -1;
}

// The forward pass's fused epilogue, applied to conv + bias as the output is stored. The backward
// recovers the activation's derivative from the output alone, which needs negative_slope >= 0.
enum class Activation : int { none = 0, relu = 1, leaky_relu = 2 };

// torch's semantics: relu(-inf) = 0, relu(NaN) = NaN, leaky_relu(v) = v < 0 ? v * slope : v.
template <typename T>
MEDKERN_HD T activate(T v, Activation act, T slope) {
  if (act == Activation::none || !(v < T(0))) return v;
  return act == Activation::relu ? T(0) : v * slope;
}

template <typename T>
struct Conv2dArgs {
  Conv2dShape s;
  const T* x;     // N x C x H x W
  const T* w;     // K x C/groups x R x S
  const T* bias;  // K, or nullptr
  const T* dy;    // N x K x P x Q (backward)
  T* y;           // forward output, N x K x P x Q
  T* dx;          // grad-input output, N x C x H x W
  T* dw;          // grad-weight output, K x C/groups x R x S
  T* db;          // grad-bias output, K
  Activation act; // forward epilogue (zero-initialised: none)
  T slope;        // leaky_relu's negative slope
};

}  // namespace medkern

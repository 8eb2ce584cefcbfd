#pragma once
// One params struct for the convolution family, over one N-d geometry: a 3-d convolution (depth, height,
// width); a 2-d one is a 3-d one of depth 1 (D = T = O = 1, no depth stride, padding or dilation), a 1-d one
// has height 1 as well. The planner (csrc/cpu/conv_plan.h), the kernels and the bindings all read this
// struct; the ops layer validates the same geometry in Python (medkern/_geometry.py). Every tensor is
// dense, channels first (weights: Cout x Cin/groups x T x R x S); the bindings check that before a kernel
// sees the pointers.
#include <cstdint>
#include "macros.h"

namespace medkern {

struct ConvShape {
  int64_t N, C, H, W;        // input batch, channels, height, width
  int64_t K, R, S;           // output channels, kernel height, kernel width
  int64_t P, Q;              // output height, width
  int64_t stride_h, stride_w;
  int64_t pad_h, pad_w;      // leading padding; trailing padding is implied by the output extents
  int64_t dil_h, dil_w;
  int64_t groups;
  // Depth: input, kernel and output extents, stride, leading padding, dilation. A 2-d shape keeps these
  // defaults, so code that builds a 2-d shape field by field never sees a depth.
  int64_t D = 1, T = 1, O = 1, stride_d = 1, pad_d = 0, dil_d = 1;

  MEDKERN_HD int64_t c_per_group() const { return C / groups; }
  MEDKERN_HD int64_t k_per_group() const { return K / groups; }
  // Kernel taps per channel pair, input elements per channel of one image, output positions per image.
  MEDKERN_HD int64_t taps() const { return T * R * S; }
  MEDKERN_HD int64_t in_volume() const { return D * H * W; }
  MEDKERN_HD int64_t out_volume() const { return O * P * Q; }
  // Length of the reduction of one output element: Cin/groups * T * R * S.
  MEDKERN_HD int64_t crs() const { return c_per_group() * taps(); }
  // Whether the depth axis is trivial: the 2-d kernels serve exactly these shapes.
  MEDKERN_HD bool planar() const { return D == 1 && T == 1 && O == 1 && pad_d == 0; }
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
struct ConvArgs {
  ConvShape s;
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
  const T* residual;  // forward: N x K x P x Q added before the activation, or nullptr
  const T* packed_w;  // forward: the weights prepacked for one CPU forward path, or nullptr
  int packed_layout;  // which path packed_w was packed for (the CPU planner's ConvPath); used only by that path
  // forward: the input as the convolution reads it is act(x * in_scale[c] + in_shift[c]) (a BatchNorm and
  // ReLU before the convolution), zero in the padding; in_scale nullptr: x itself
  const T* in_scale;
  const T* in_shift;
  bool in_relu;
};

// The per-channel affine map and ReLU a forward convolution applies to its input as it reads it.
template <typename T>
struct InputPrologue {
  const T* scale = nullptr;  // nullptr: none
  const T* shift = nullptr;
  bool relu = false;
  MEDKERN_HD T apply(T v, int64_t c) const {
    v = v * scale[c] + shift[c];
    return relu && v < T(0) ? T(0) : v;
  }
};

}  // namespace medkern

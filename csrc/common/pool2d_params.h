#pragma once
// One params struct for the pooling family. Tensors are dense NCHW, seen as N*C independent planes;
// 1-D pooling is the H = 1 case. The output extent (P, Q) comes from the output tensor, so ceil_mode is
// already folded into it.
#include <cstdint>

#include "macros.h"

namespace medkern {

struct Pool2dShape {
  int64_t planes;        // N * C
  int64_t H, W, P, Q;    // input and output plane sizes
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  bool count_include_pad;    // average pooling only
  int64_t divisor_override;  // average pooling only; 0 when not given
};

// The window of adaptive pooling along one axis: [start, end) of an input of `in` for output i of `out`.
MEDKERN_HD int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
MEDKERN_HD int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

// torch's divisor for average pooling is a product of one count per axis: the window clipped to the
// padded input (count_include_pad) or to the input itself.
MEDKERN_HD int64_t avg_pool_axis_count(int64_t o, int64_t size, int64_t k, int64_t stride, int64_t pad,
                                       bool count_include_pad) {
  int64_t a = o * stride - pad;
  int64_t b = a + k < size + pad ? a + k : size + pad;
  if (count_include_pad) return b - a;
  a = a > 0 ? a : 0;
  b = b < size ? b : size;
  return b - a;
}

MEDKERN_HD int64_t avg_pool_divisor(const Pool2dShape& s, int64_t oh, int64_t ow) {
  if (s.divisor_override) return s.divisor_override;
  return avg_pool_axis_count(oh, s.H, s.kh, s.sh, s.ph, s.count_include_pad) *
         avg_pool_axis_count(ow, s.W, s.kw, s.sw, s.pw, s.count_include_pad);
}

template <typename T>
struct Pool2dArgs {
  Pool2dShape s;
  const T* x;         // planes x H x W
  const T* dy;        // planes x P x Q (backward)
  const int64_t* indices_in;  // planes x P x Q, flat h*W + w within the plane (max backward)
  T* y;               // planes x P x Q
  int64_t* indices;   // planes x P x Q or nullptr (max forward)
  T* dx;              // planes x H x W (backward)
};

}  // namespace medkern

#pragma once
// The params struct for pooling over volumes. Tensors are dense NCDHW, seen as N*C independent volumes; the
// output extents (O, P, Q) come from the output tensor, so ceil_mode is already folded into them. Indices are
// flat (d*H + h)*W + w within a volume (torch's convention). Per-axis arrays are (depth, height, width).
#include <cstdint>

#include "pool2d_params.h"  // adaptive_start/end, avg_pool_axis_count

namespace medkern {

struct Pool3dShape {
  int64_t volumes;            // N * C
  int64_t in[3], out[3];      // D, H, W and O, P, Q
  int64_t k[3], s[3], p[3], d[3];
  bool count_include_pad;     // average pooling only
  int64_t divisor_override;   // average pooling only; 0 when not given
  int64_t in_volume() const { return in[0] * in[1] * in[2]; }
  int64_t out_volume() const { return out[0] * out[1] * out[2]; }
};

template <typename T>
struct Pool3dArgs {
  Pool3dShape s;
  const T* x;         // volumes x D x H x W
  const T* dy;        // volumes x O x P x Q (backward)
  T* y;               // volumes x O x P x Q
  int64_t* indices;   // volumes x O x P x Q or nullptr (max forward)
  T* dx;              // volumes x D x H x W (backward)
};

}  // namespace medkern

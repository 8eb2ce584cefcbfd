#pragma once
// The params struct of the batch-normalisation kernels. Tensors are dense (N, C, S...): N * C planes of S
// values, the statistics taken per channel over N * S values. The activation (conv_params.h's codes) is
// applied after the affine map in the forward and differentiated from the output in the backward: with a
// slope >= 0, output > 0 exactly where its argument is.
#include <cstdint>

#include "conv_params.h"  // Activation, activate

namespace medkern {

struct BatchNormShape {
  int64_t N, C, S;
  int64_t count() const { return N * S; }  // values per channel
};

template <typename T>
struct BatchNormArgs {
  BatchNormShape s;
  Activation act = Activation::none;
  T slope = T(0);
  const T* x;        // N x C x S
  const T* y;        // N x C x S: the forward's output (backward with an activation), else nullptr
  const T* dy;       // N x C x S (backward)
  const T* mean;     // C: the batch mean (backward)
  const T* invstd;   // C: 1 / sqrt(var + eps) (backward)
  const T* scale;    // C: the affine map's factor (forward: weight * invstd; backward: weight, or nullptr for 1)
  const T* shift;    // C (forward): bias - mean * weight * invstd
  T* out_y;          // N x C x S (forward)
  T* out_mean;       // C (statistics)
  T* out_var;        // C (statistics): biased, as normalisation uses it
  T* dx;             // N x C x S (backward), or nullptr
  T* dweight;        // C (backward), or nullptr
  T* dbias;          // C (backward), or nullptr
};

}  // namespace medkern

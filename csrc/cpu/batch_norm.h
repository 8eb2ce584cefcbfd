#pragma once
// Batch normalisation on the CPU, in the passes over memory it needs: one for the statistics, one for the
// normalisation and its activation, and two for the backward of both (the sums, then the input gradient).
#include "../common/batch_norm_params.h"

namespace medkern::cpu {

// out_mean, out_var per channel (sums in double).
template <typename T>
void batch_norm_statistics(const BatchNormArgs<T>& a);

// out_y = act(x * scale + shift) per channel.
template <typename T>
void batch_norm_apply(const BatchNormArgs<T>& a);

// With g = dy * act'(y) (dy where no activation) and xhat = (x - mean) * invstd, per channel:
// dbias = sum g, dweight = sum g * xhat, dx = scale * invstd * (g - mean(g) - xhat * mean(g * xhat)).
template <typename T>
void batch_norm_backward(const BatchNormArgs<T>& a);

}  // namespace medkern::cpu

#pragma once
#include "../common/conv2d_params.h"

namespace medkern::cpu {

// Each writes every element of its output; OpenMP threads are spread over the batch and column blocks.
template <typename T> void conv2d_forward(const Conv2dArgs<T>& a);
template <typename T> void conv2d_grad_input(const Conv2dArgs<T>& a);
template <typename T> void conv2d_grad_weight(const Conv2dArgs<T>& a);
template <typename T> void conv2d_grad_bias(const Conv2dArgs<T>& a);

}  // namespace medkern::cpu

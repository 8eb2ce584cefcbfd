#pragma once
#include "../common/conv_params.h"

namespace medkern::cpu {

// Each writes every element of its output; OpenMP threads are spread over the batch and column blocks.
template <typename T> void conv2d_forward(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_input(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_weight(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_bias(const ConvArgs<T>& a);

}  // namespace medkern::cpu

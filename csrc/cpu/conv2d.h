#pragma once
#include "../common/conv_params.h"

namespace medkern::cpu {

// Each writes every element of its output; OpenMP threads are spread over the batch and column blocks.
template <typename T> void conv2d_forward(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_input(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_weight(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_bias(const ConvArgs<T>& a);

// The weights in the layout a forward call reads as ConvArgs::packed_w: packed once (when a network is
// compiled) instead of on every call. Only K, C/groups, R, S and groups of the shape matter.
template <typename T> int64_t conv2d_packed_weight_size(const ConvShape& s);
template <typename T> void conv2d_pack_weight(const ConvShape& s, const T* w, T* packed);

}  // namespace medkern::cpu

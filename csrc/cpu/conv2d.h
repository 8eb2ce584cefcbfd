#pragma once
#include "../common/conv_params.h"
#include "conv_plan.h"

namespace medkern::cpu {

// Each writes every element of its output; OpenMP threads are spread over the batch and column blocks.
template <typename T> void conv2d_forward(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_input(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_weight(const ConvArgs<T>& a);
template <typename T> void conv2d_grad_bias(const ConvArgs<T>& a);

// The weights in the layout forward path `layout` reads as ConvArgs::packed_w (with packed_layout = layout):
// packed once (when a network is compiled) instead of on every call. Only K, C/groups, R, S and groups of the
// shape matter. Paths that read packed weights: gemm_weight_panels, winograd_f2x3_panels (3x3 kernels, one
// group); a call whose plan is another path ignores them. Throws std::invalid_argument for another layout.
template <typename T> int64_t conv2d_packed_weight_size(ConvPath layout, const ConvShape& s);
template <typename T> void conv2d_pack_weight(ConvPath layout, const ConvShape& s, const T* w, T* packed);

}  // namespace medkern::cpu

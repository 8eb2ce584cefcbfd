#pragma once
// Grad-weight as dot products of shifted rows, with nothing packed. See
// conv2d_grad_weight_shifted.cpp.
#include "../common/conv_params.h"

namespace medkern::cpu {

template <typename T>
void conv2d_grad_weight_shifted(const ConvShape& s, const T* x, const T* dy, T* dw);

}  // namespace medkern::cpu

#pragma once
// Grad-weight as dot products of shifted rows, with nothing packed. See
// conv2d_grad_weight_shifted.cpp.
#include "../common/conv2d_params.h"

namespace medkern::cpu {

bool grad_weight_shifted_applies(const Conv2dShape& s);

template <typename T>
void conv2d_grad_weight_shifted(const Conv2dShape& s, const T* x, const T* dy, T* dw);

}  // namespace medkern::cpu

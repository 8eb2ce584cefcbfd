#pragma once
// Strided grad-input over the padded grid, with nothing packed but the weights. See
// conv2d_grad_input_shifted.cpp.
#include "../common/conv_params.h"

namespace medkern::cpu {

template <typename T>
void conv2d_grad_input_shifted(const ConvShape& s, const T* dy, const T* w, T* dx);

}  // namespace medkern::cpu

#pragma once
// Strided grad-input over the padded grid, with nothing packed but the weights. See
// conv2d_grad_input_shifted.cpp.
#include "../common/conv2d_params.h"

namespace medkern::cpu {

bool grad_input_shifted_applies(const Conv2dShape& s);

template <typename T>
void conv2d_grad_input_shifted(const Conv2dShape& s, const T* dy, const T* w, T* dx);

}  // namespace medkern::cpu

#pragma once
// Forward convolution over the padded grid, with nothing packed but the weights. See
// conv2d_forward_shifted.cpp.
#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

template <typename T>
void conv2d_forward_shifted(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, const Epilogue<T>& ep);

}  // namespace medkern::cpu

#pragma once
// Forward convolution with at most 4 output channels per group (the RGB or greyscale output layer of an
// image generator, a segmentation head). See conv2d_few_outputs.cpp.
#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

template <typename T>
void conv2d_forward_few_outputs(const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                                const Epilogue<T>& ep);

}  // namespace medkern::cpu

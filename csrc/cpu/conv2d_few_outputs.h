#pragma once
// Forward convolution with at most 4 output channels per group (the RGB or greyscale output layer of an
// image generator, a segmentation head). See conv2d_few_outputs.cpp.
#include "../common/conv2d_params.h"
#include "gemm.h"

namespace medkern::cpu {

bool few_outputs_applies(const Conv2dShape& s);

template <typename T>
void conv2d_forward_few_outputs(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                                const Epilogue<T>& ep);

}  // namespace medkern::cpu

#pragma once
// 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3): each 2x2 block of outputs costs
// 16 multiplications per (input, output) channel pair instead of 36. See conv2d_winograd.cpp.
#include "../common/conv2d_params.h"
#include "gemm.h"

namespace medkern::cpu {

// Whether the Winograd path serves this forward convolution (3x3, stride 1, dilation 1, one group, enough
// channels for the 16 small GEMMs to run near the micro-kernel's speed). MEDKERN_CONV_WINOGRAD=0 turns it
// off (the direct implicit-GEMM path then runs).
bool winograd_applies(const Conv2dShape& s);

template <typename T>
void conv2d_forward_winograd(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                             const Epilogue<T>& ep);

}  // namespace medkern::cpu

#pragma once
// Forward convolution by Winograd's minimal filtering, in three forms (see conv2d_winograd.cpp):
//   F(2x2, 3x3) for 3x3 stride-1 layers: 16 multiplications per 2x2 block of outputs and (input, output)
//   channel pair instead of 36;
//   on the input's four stride phases, F(4x4, 4x4) for 7x7 and 8x8 stride-2 layers (the ResNet stem):
//   12.25 multiplications per output and input channel instead of 49 (7x7); and F(2x2, 2x2) for 4x4
//   stride-2 layers with many channels (a DCGAN discriminator): 9 instead of 16.
#include "../common/conv_params.h"
#include "conv_plan.h"
#include "gemm.h"

namespace medkern::cpu {

// `scheme`: winograd_f2x3, winograd_f4x4_phases or winograd_f2x2_phases (the planner's choice, conv_plan.h).
template <typename T>
void conv2d_forward_winograd(ConvPath scheme, const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                             const Epilogue<T>& ep);

}  // namespace medkern::cpu

#pragma once
// Forward convolution by Winograd's minimal filtering, in three forms (see conv2d_winograd.cpp):
//   F(2x2, 3x3) for 3x3 stride-1 layers: 16 multiplications per 2x2 block of outputs and (input, output)
//   channel pair instead of 36;
//   on the input's four stride phases, F(4x4, 4x4) for 7x7 and 8x8 stride-2 layers (the ResNet stem):
//   12.25 multiplications per output and input channel instead of 49 (7x7); and F(2x2, 2x2) for 4x4
//   stride-2 layers with many channels (a DCGAN discriminator): 9 instead of 16.
#include "../common/conv2d_params.h"
#include "gemm.h"

namespace medkern::cpu {

// Whether a Winograd path serves this forward convolution (the shapes above, dilation 1, one group,
// enough channels and positions for the small GEMMs to run near the micro-kernel's speed).
// MEDKERN_CONV_WINOGRAD=0 turns it off (the other forward paths then run).
bool winograd_applies(const Conv2dShape& s);

template <typename T>
void conv2d_forward_winograd(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                             const Epilogue<T>& ep);

}  // namespace medkern::cpu

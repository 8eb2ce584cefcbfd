#pragma once
// Forward convolution of volumes by Winograd's F(2x2x2, 3x3x3) (see conv3d_winograd.cpp): 3x3x3 stride-1 layers
// of one group, 64 multiplications per 2x2x2 block of outputs and (input, output) channel pair instead of 216.
#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

// The transformed kernels U_e = (G x3 g)_e, packed as the GEMMs read them: made once and passed as `packed` (a
// compiled network's weights), or made by each call where `packed` is null.
template <typename T>
int64_t conv3d_winograd_weights_size(const ConvShape& s);
template <typename T>
void conv3d_pack_winograd_weights(const ConvShape& s, const T* w, T* packed);

template <typename T>
void conv3d_forward_winograd(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias, T* y,
                             const Epilogue<T>& ep);

}  // namespace medkern::cpu

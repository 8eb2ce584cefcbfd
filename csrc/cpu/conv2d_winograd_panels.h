#pragma once
// Winograd F(2x2, 3x3) with the output channels in the vector lanes (the GEMM columns) and the tiles of the
// batch as GEMM rows: the form for few tiles (batch-1 inference on 7x7 to 14x14 maps), where the column-panel
// Winograd (conv2d_winograd.cpp) leaves its tile panels mostly empty. The transformed kernels, 16 per
// (output, input) channel pair, are the streamed operand and can be packed once (a compiled network's weights).
#include <cstdint>

#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

template <typename T>
int64_t winograd_panels_size(const ConvShape& s);

// packed = U_e = G g G^T for every transformed position e, in NR-channel panels (see the .cpp).
template <typename T>
void pack_winograd_panels(const ConvShape& s, const T* w, T* packed);

// 3x3, stride 1, dilation 1, one group. `packed` from pack_winograd_panels of w, or nullptr (transformed here);
// `residual` (N x K x P x Q) may be nullptr.
template <typename T>
void conv2d_forward_winograd_panels(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                                    const T* residual, T* y, const Epilogue<T>& ep);

}  // namespace medkern::cpu

#pragma once
// Forward convolution as a GEMM whose rows are the output positions of the whole batch and whose columns are
// the output channels: the weights are the B operand, in NR-channel panels that can be packed once and kept
// (a compiled network's prepacked weights), and the im2col rows are the small, gathered A operand.
//   y[n, g*Kg + j, p] = act(sum_crs col(x)[n*PQ + p, crs] * W[g*Kg + j, crs] + bias + residual)
// Where a map has few positions (batch-1 inference of the deep layers: 4x4 to 14x14) a position-column GEMM
// leaves most of its column panels empty and reads the weights as the streamed operand anyway; here the
// weights stream once, panel by panel, at full vector width.
#include <cstdint>

#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

// Elements of the packed weights of a convolution with this shape (only K, C/groups, R, S and groups matter).
template <typename T>
int64_t weight_panels_size(const ConvShape& s);

// packed[...] = the weights w (K x C/groups x R x S) in the panel layout the kernel reads.
template <typename T>
void pack_weight_panels(const ConvShape& s, const T* w, T* packed);

// `packed` from pack_weight_panels of the same w, or nullptr to pack for this call; `residual` (N x K x P x Q,
// added before the activation) may be nullptr; `pro` is applied to x as the im2col rows are gathered.
template <typename T>
void conv2d_forward_weight_panels(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                                  const T* residual, T* y, const Epilogue<T>& ep, const InputPrologue<T>& pro = {});

}  // namespace medkern::cpu

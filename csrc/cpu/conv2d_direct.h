#pragma once
// Direct convolution with the output channels in the vector lanes and a short row of output positions in the
// registers: for each input channel and kernel tap, a block of 16 or 32 output channels' weights (one or two vectors)
// meets one broadcast input value per position of the row. No im2col, no C buffer, no transform: where a map is
// small (batch-1 inference, 2x2 to 28x28, or a volume's 4^3 to 14^3) the GEMM paths pay for those passes, and the
// Winograd paths for their transforms, as much as for their products. The weights go in blocks laid out as the
// kernel streams them, which a compiled network packs once. 2-d and 3-d (a plane is a volume of depth 1):
//   y[n, g*Kg + k, o, p, q] = act(sum_{c, t, r, s} W[g*Kg + k, c, t, r, s] *
//                                 pro(x)[n, g*Cg + c, o*sd - pd + t*dd, p*sh - ph + r*dh, q*sw - pw + s*dw]
//                                 + bias + residual)
#include <cstdint>

#include "../common/conv_params.h"
#include "gemm.h"

namespace medkern::cpu {

// Elements of the packed weights of a convolution with this shape (only K, C/groups, R, S and groups matter).
template <typename T>
int64_t direct_weights_size(const ConvShape& s);

// packed[...] = the weights w (K x C/groups x R x S) in the channel blocks the kernel reads.
template <typename T>
void pack_direct_weights(const ConvShape& s, const T* w, T* packed);

// `packed` from pack_direct_weights of the same w, or nullptr to pack for this call; `residual` (N x K x P x Q,
// added before the activation) may be nullptr; `pro` is applied to x as the padded input is made.
template <typename T>
void conv2d_forward_direct(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                           const T* residual, T* y, const Epilogue<T>& ep, const InputPrologue<T>& pro = {});

}  // namespace medkern::cpu

#pragma once
// The weight gradient of 3x3 stride-1 layers (F(2x2, 3x3) or F(4x4, 3x3)) and of 3x3x3 stride-1 layers of volumes
// (F(2x2x2, 3x3x3)) by Winograd's minimal filtering: the reduction over the batch's tiles as a^d GEMMs (see
// conv_grad_weight_winograd.cpp).
#include "../common/conv_params.h"
#include "conv_plan.h"

namespace medkern::cpu {

// `scheme`: grad_weight_winograd_f2x3, grad_weight_winograd_f4x3 or grad_weight_winograd3d_f2x3 (the planner's
// choice, conv_plan.h).
template <typename T>
void conv_grad_weight_winograd(ConvPath scheme, const ConvShape& s, const T* x, const T* dy, T* dw);

}  // namespace medkern::cpu

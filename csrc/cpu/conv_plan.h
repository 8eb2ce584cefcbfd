#pragma once
// Which CPU algorithm runs a convolution. One planner per direction picks a path from the call's shape and
// returns it as a plan; the kernels (conv2d*.cpp) execute plans and decide nothing. Every threshold the
// planners use is a named constant in conv_plan.cpp, next to the reason for it.
//
// Paths, by direction (a name is what Python's medkern.ops.conv_plan returns and MEDKERN_CONV_PATH takes):
//   forward      direct                 output channels in the vector lanes, a row of positions in registers,
//                                       for small maps; its weight blocks can be prepacked (conv2d_direct.cpp)
//                winograd_f2x3_panels   F(2x2, 3x3) with output channels as GEMM columns, for few tiles
//                                       (conv2d_winograd_panels.cpp); its transformed kernels can be prepacked
//                winograd_f4x3          F(4x4, 3x3) for 3x3 stride-1 layers on larger maps (conv2d_winograd.cpp)
//                winograd_f2x3          F(2x2, 3x3) for 3x3 stride-1 layers (conv2d_winograd.cpp)
//                winograd_f4x4_phases   F(4x4, 4x4) on the stride phases of 7x7/8x8 stride-2 layers
//                winograd_f2x2_phases   F(2x2, 2x2) on the stride phases of 4x4 stride-2 layers
//                winograd3d_f2x3        F(2x2x2, 3x3x3) for 3x3x3 stride-1 layers of volumes (conv3d_winograd.cpp)
//                few_outputs            direct loop for at most 4 outputs per group (conv2d_few_outputs.cpp)
//                grid                   implicit GEMM over the padded grid, B not packed (conv2d_forward_shifted.cpp)
//                gemm_weight_panels     implicit GEMM with positions as rows and the weights as (prepackable) B
//                                       panels of output channels (conv2d_weight_panels.cpp)
//                gemm_across_images     implicit GEMM whose columns run over the whole batch (conv2d.cpp)
//                gemm                   implicit GEMM, im2col packed per image (conv2d.cpp)
//   grad-input   grid                   transposed GEMM over the padded grid (conv2d_grad_input_shifted.cpp)
//                as_forward>F           stride 1: a forward convolution of dy with the flipped, transposed
//                                       kernel, itself run by forward plan F
//                phases>F               stride > 1: one forward convolution per stride phase with its
//                                       sub-kernel, each run by forward plan F (F1+F2 where phases differ)
//                gemm_col2im            GEMM into im2col columns, added back by col2im (conv2d.cpp)
//   grad-weight  winograd_f4x3          F(4x4, 3x3) for 3x3 stride-1 layers on larger maps, reducing over the
//                                       batch's tiles (conv_grad_weight_winograd.cpp)
//                winograd_f2x3          F(2x2, 3x3) likewise, for 3x3 stride-1 layers
//                winograd3d_f2x3        F(2x2x2, 3x3x3) likewise, for 3x3x3 stride-1 layers of volumes
//                grid                   dot products of shifted grid rows (conv2d_grad_weight_shifted.cpp)
//                gemm_across_images     GEMM reducing over the positions of the whole batch (conv2d.cpp)
//                gemm                   GEMM reducing over each image's positions (conv2d.cpp)
//
// A path "applies" to a shape when its kernel computes that shape correctly; the planner then prefers the
// first applicable path, in the order above, whose performance rule holds. A forced path
// (MEDKERN_CONV_PATH, or force_conv_path) replaces that choice in every direction that has a path of that
// name, and is an error where it does not apply.
#include <cstdint>
#include <string>
#include <vector>

#include "../common/conv_params.h"

namespace medkern::cpu {

enum class ConvDirection : int { forward, grad_input, grad_weight };

enum class ConvPath : int {
  none,
  // forward
  forward_direct, winograd_f2x3_panels, winograd_f4x3, winograd_f2x3, winograd_f4x4_phases, winograd_f2x2_phases, winograd3d_f2x3,
  few_outputs, forward_grid, forward_weight_panels,
  forward_gemm_across_images,
  forward_gemm,
  // grad-input
  grad_input_grid, as_forward, phases, gemm_col2im,
  // grad-weight
  grad_weight_winograd_f4x3, grad_weight_winograd_f2x3, grad_weight_winograd3d_f2x3, grad_weight_grid, grad_weight_gemm_across_images, grad_weight_gemm,
  count
};

struct ConvPlan {
  ConvPath path = ConvPath::none;
  // The forward paths that as_forward or phases run, one bit per ConvPath (1u << int(path)); else 0.
  uint32_t subs = 0;
};

// The planners. `double_precision` selects the element type the GEMM panels are counted in. They throw
// std::invalid_argument for a forced path that does not apply. Volumes (depth > 1) take the paths that walk
// the N-d geometry: the GEMMs and as_forward.
// `weights_packed`: the caller holds the weights packed ahead (a compiled network); the paths that read packed
// weights are chosen only then, as packing them on every call costs more than they save (512x512 3x3 weights,
// 9.4 MB: 2.5 ms a call at batch 1 against 1.4 ms on gemm_across_images and 0.45 ms packed once).
ConvPlan plan_forward(const ConvShape& s, bool double_precision, bool weights_packed = false);
ConvPlan plan_grad_input(const ConvShape& s, bool double_precision);
ConvPlan plan_grad_weight(const ConvShape& s, bool double_precision);
ConvPlan plan_conv(ConvDirection d, const ConvShape& s, bool double_precision, bool weights_packed = false);

// "as_forward>winograd_f2x3", "phases>gemm+grid", "grid", ...
std::string plan_name(const ConvPlan& p);

// The forward path of that name ("gemm_weight_panels"), or ConvPath::none.
ConvPath forward_path_named(const std::string& name);

// Every plan that applies to the shape in direction d, sub-plans spelled out, in the planner's order:
// what MEDKERN_CONV_PATH may force for it. The tests run each case through each of them.
std::vector<std::string> applicable_plans(ConvDirection d, const ConvShape& s, bool double_precision);

// Force a path by name ("grid"), or a path with its sub-plan ("as_forward>gemm"); "" plans freely again.
// Throws std::invalid_argument naming the valid names. Process-wide; MEDKERN_CONV_PATH sets the initial value.
void force_conv_path(const std::string& spec);
std::string forced_conv_path();

// The Winograd schemes' tile sizes, which the planner's cost model counts (conv2d_winograd.cpp asserts them).
struct WinogradTile {
  int m, a, stride;  // outputs per tile side, transformed tile side, layer stride
};
constexpr WinogradTile kWinogradF2x3{2, 4, 1}, kWinogradF4x3{4, 6, 1}, kWinogradF4x4{4, 7, 2}, kWinogradF2x2{2, 3, 2};

// The shapes a grad-input's sub-plans run over, shared by the planner and the executor.
// as_forward: dx[c, i] = sum_{k, r} dy[k, i + pad - r*dil] * w[k, c, r], a convolution of dy with the kernel
// flipped in space and transposed in channels, leading padding dil*(R-1) - pad.
ConvShape as_forward_shape(const ConvShape& s);

// phases: the input positions of one axis split by phase = (i + pad) mod stride; only the taps
// r = phase + m*stride reach a phase, whose positions i = stride*u + phase - pad then read dy[u - m]: a
// stride-1 correlation of dy with that sub-kernel, i.e. a forward convolution with the sub-kernel flipped.
struct StridePhase {
  int64_t taps;   // sub-kernel length (0: no tap reaches this phase, its dx is zero)
  int64_t first;  // first u with i = stride*u + phase - pad >= 0
  int64_t count;  // positions of this phase inside [0, size)
  int64_t pad;    // leading padding of the phase's forward convolution
};
StridePhase stride_phase(int64_t phase, int64_t stride, int64_t pad, int64_t taps_total, int64_t size);
// The forward convolution of phase (rows, cols); only meaningful where both have taps and positions.
ConvShape phase_shape(const ConvShape& s, const StridePhase& rows, const StridePhase& cols);

// The forward plan of one phase of a phases grad-input (a forced sub-plan, or the planner's choice).
ConvPlan plan_phase(const ConvPlan& grad_input, const ConvShape& phase, bool double_precision);

}  // namespace medkern::cpu

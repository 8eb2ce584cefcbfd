#pragma once
#include "../common/gan_loss_params.h"

namespace medkern::cpu {

// Writes per_sample, total and, where their pointers are non-null, d_real / d_fake / dsum_*. Chunks of
// kGanChunk elements are spread over the OpenMP threads; their partial sums meet in a fixed order.
template <typename T> void gan_loss_forward(const GanLossArgs<T>& a);
template <typename T> void gan_penalty_forward(const GanPenaltyArgs<T>& a);

}  // namespace medkern::cpu

#pragma once
// The CUDA GAN loss kernels. Plain C++ declarations (module_cuda.cpp, compiled by the host compiler,
// includes this); the kernels are in gan_loss.cu.
//
// Both functions launch on `stream` (a cudaStream_t carried as an integer) on the current device, which
// must hold the pointers, never block the host, and write every element of their outputs. Reductions are
// bitwise reproducible: one block per chunk of kGanChunk elements reduces with a fixed shared-memory
// tree, and a second pass adds the chunk partials of each sample, then the samples, in a fixed order.
// Launch failures throw std::runtime_error with CUDA's error string.
#include <cstdint>

#include "../common/gan_loss_params.h"

namespace medkern::cuda {

template <typename T> void gan_loss_forward(const GanLossArgs<T>& a, intptr_t stream);
template <typename T> void gan_penalty_forward(const GanPenaltyArgs<T>& a, intptr_t stream);

}  // namespace medkern::cuda

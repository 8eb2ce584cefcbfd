#pragma once
// The CUDA conv2d kernels. Plain C++ on purpose: module_cuda.cpp is compiled by the host compiler.
//
// Every function launches asynchronously on `stream` (a cudaStream_t carried as an integer, 0 for the
// legacy default stream) on the *current* device, which must be the device holding the pointers: the
// Python layer calls with `torch.cuda.device(x.device)` active. Each writes every element of its output,
// so callers may pass uninitialised buffers. Launch failures throw std::runtime_error with CUDA's error
// string. Results are deterministic: no floating-point atomics, fixed summation order for a given shape.
#include <cstdint>

#include "../common/conv_params.h"

namespace medkern::cuda {

template <typename T> void conv2d_forward(const ConvArgs<T>& a, intptr_t stream);
template <typename T> void conv2d_grad_input(const ConvArgs<T>& a, intptr_t stream);
template <typename T> void conv2d_grad_weight(const ConvArgs<T>& a, intptr_t stream);
template <typename T> void conv2d_grad_bias(const ConvArgs<T>& a, intptr_t stream);

}  // namespace medkern::cuda

#pragma once
// The CUDA pooling kernels. Plain C++ on purpose: module_cuda.cpp is compiled by the host compiler.
//
// Conventions as for conv2d.h: every function launches on `stream` (a cudaStream_t carried as an integer,
// 0 for the legacy default stream) on the *current* device, which must hold the pointers; each writes
// every element of its output, so callers may pass uninitialised buffers; launch failures throw
// std::runtime_error with CUDA's error string. Semantics are torch's (backends/CONTRACT.md, "Pooling
// family"): the max tie/NaN rule and initial index, the average divisor rules, the adaptive windows.
//
// Determinism: the forwards and the average / adaptive-average backwards are bitwise reproducible (each
// output element is computed by one thread in a fixed order, no atomics). max_pool2d_backward scatters
// with floating-point atomicAdd, so where windows overlap (stride < kernel) the order in which the
// gradients of one input element are summed, and hence its last bits, may vary from run to run.
#include <cstdint>

#include "../common/pool2d_params.h"

namespace medkern::cuda {

// y (and a.indices when not nullptr) from x, over a.s's window geometry (kernel, stride, padding, dilation).
template <typename T> void max_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream);

// dx = 0, then dx[plane, indices_in] += dy. Indices outside [0, H*W) are skipped and counted; the count
// is returned, which needs the stream synchronised (the only call here that blocks the host).
template <typename T> int64_t max_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream);

// Average pooling (dilation 1) with count_include_pad / divisor_override from a.s.
template <typename T> void avg_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream);
template <typename T> void avg_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream);

// Adaptive pooling to (P, Q): window i of an axis of input n and output m is [floor(i*n/m), ceil((i+1)*n/m)).
template <typename T> void adaptive_avg_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream);
template <typename T> void adaptive_avg_pool2d_backward(const Pool2dArgs<T>& a, intptr_t stream);
template <typename T> void adaptive_max_pool2d_forward(const Pool2dArgs<T>& a, intptr_t stream);  // indices required

}  // namespace medkern::cuda

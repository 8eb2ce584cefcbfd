#pragma once
// The CUDA recurrent kernels. Plain C++ on purpose: module_cuda.cpp is compiled by the host compiler.
//
// Each function runs one layer and direction over the sequence on `stream` (a cudaStream_t as an integer)
// on the current device, with the layout and masking rules of rnn_params.h. The time loop is on the host:
// per step, one launch computes every gate row's recurrent dot products and the fused pointwise update
// (plus one launch for an LSTM projection); the backward pass uses two launches per step (pointwise, then
// the product with W_hh). Each output element is written by one thread in a fixed order: deterministic.
// Launch failures throw std::runtime_error with CUDA's error string.
#include <cstdint>

#include "../common/rnn_params.h"

namespace medkern::cuda {

template <typename T> void lstm_forward(const RnnArgs<T>& a, intptr_t stream);
template <typename T> void lstm_backward(const RnnArgs<T>& a, intptr_t stream);
template <typename T> void gru_forward(const RnnArgs<T>& a, intptr_t stream);
template <typename T> void gru_backward(const RnnArgs<T>& a, intptr_t stream);

}  // namespace medkern::cuda

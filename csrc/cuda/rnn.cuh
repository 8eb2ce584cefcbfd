#pragma once
// Device pieces shared by the CUDA recurrent kernels: the nonlinearities for the shared gate math, the
// launch shape (one thread per (batch row, unit)) and error checking.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "rnn.h"

namespace medkern::cuda {

template <typename T>
struct CudaMath {
  MEDKERN_HD static T one() { return T(1); }
  MEDKERN_HD static T sigmoid(T x) { return T(1) / (T(1) + exp(-x)); }
  MEDKERN_HD static T tanh(T x) { return ::tanh(x); }
};

constexpr int kRnnThreads = 128;

inline dim3 rnn_grid(int64_t B, int64_t units) {
  return dim3(static_cast<unsigned>((units + kRnnThreads - 1) / kRnnThreads), static_cast<unsigned>(B));
}

inline void rnn_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

inline cudaStream_t as_stream(intptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Row-major dot product of w's row `row` (length n) with v.
template <typename T>
__device__ __forceinline__ T dot_row(const T* __restrict__ w, int64_t row, const T* __restrict__ v, int64_t n) {
  T acc = T(0);
  const T* r = w + row * n;
  for (int64_t k = 0; k < n; ++k) acc += r[k] * v[k];
  return acc;
}

// Column `col` of a row-major (rows x ld) w dotted with v.
template <typename T>
__device__ __forceinline__ T dot_col(const T* __restrict__ w, int64_t col, int64_t ld, const T* __restrict__ v,
                                     int64_t rows) {
  T acc = T(0);
  for (int64_t k = 0; k < rows; ++k) acc += w[k * ld + col] * v[k];
  return acc;
}

// Backward through time: the gradient of the state after step t for row b, unit p (of P; P = H without a
// projection): the part carried in dh0 from later steps plus the output's.
template <typename T>
__device__ __forceinline__ T state_grad(const RnnArgs<T>& a, int64_t b, int64_t p, int64_t t) {
  return a.dh0[b * a.s.P + p] + a.dout[(t * a.s.B + b) * a.s.ldo + p];
}

}  // namespace medkern::cuda

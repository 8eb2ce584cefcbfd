// GAN losses on CUDA. Pass 1: one block per chunk (kGanChunk elements of one sample) evaluates the terms,
// writes the gradient and reduces its sums with a fixed tree into the workspace. Pass 2: one block adds
// each sample's chunk partials in chunk order and the per-sample values in a fixed tree. A relativistic
// loss first reduces both batch means the same way. The module is built with --use_fast_math, so expf
// and the division in the logistic terms are approximate in float (a few ulp); double is unaffected.
#include "gan_loss.cuh"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace medkern::cuda {
namespace {

constexpr int kThreads = 256;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw std::runtime_error(std::string("medkern ") + what + ": " + cudaGetErrorString(err));
  }
}

// Sums `Slots` values over the block with a fixed tree; thread 0 gets the result. `buf` is shared
// memory of Slots * kThreads values.
template <int Slots, typename T>
__device__ __forceinline__ void block_sum(T (&v)[Slots], T* buf) {
  for (int k = 0; k < Slots; ++k) buf[k * kThreads + threadIdx.x] = v[k];
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width)
      for (int k = 0; k < Slots; ++k) buf[k * kThreads + threadIdx.x] += buf[k * kThreads + threadIdx.x + width];
    __syncthreads();
  }
  for (int k = 0; k < Slots; ++k) v[k] = buf[k * kThreads];
}

struct ChunkRange { int64_t n, begin, len; };

__device__ __forceinline__ ChunkRange chunk_range(int64_t c, int64_t M) {
  const int64_t per = gan_chunks_per_sample(M), n = c / per, begin = (c % per) * kGanChunk;
  return {n, begin, M - begin < kGanChunk ? M - begin : kGanChunk};
}

template <typename T>
__global__ void chunk_sums_kernel(const T* __restrict__ real, const T* __restrict__ fake, int64_t M,
                                  T* __restrict__ ws) {
  __shared__ T buf[2 * kThreads];
  const ChunkRange k = chunk_range(blockIdx.x, M);
  const int64_t off = k.n * M + k.begin;
  T v[2] = {T(0), T(0)};
  for (int64_t i = threadIdx.x; i < k.len; i += kThreads) {
    v[0] += real[off + i];
    v[1] += fake[off + i];
  }
  block_sum<2>(v, buf);
  if (threadIdx.x == 0) {
    ws[blockIdx.x * kGanSlots + 0] = v[0];
    ws[blockIdx.x * kGanSlots + 1] = v[1];
  }
}

// Both batch means into ws[chunks * kGanSlots + {0, 1}].
template <typename T>
__global__ void means_kernel(int64_t chunks, T count, T* __restrict__ ws) {
  __shared__ T buf[2 * kThreads];
  T v[2] = {T(0), T(0)};
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    v[0] += ws[c * kGanSlots + 0];
    v[1] += ws[c * kGanSlots + 1];
  }
  block_sum<2>(v, buf);
  if (threadIdx.x == 0) {
    ws[chunks * kGanSlots + 0] = v[0] / count;
    ws[chunks * kGanSlots + 1] = v[1] / count;
  }
}

template <int Term, typename T>
__device__ __forceinline__ void side_element(const T* x, T* d, int64_t i, T p, T shift, T dscale, T& ls, T& gs) {
  T l, g;
  gan_term<Term>(x[i] - shift, p, l, g);
  g *= dscale;
  if (d) d[i] = g;
  ls += l;
  gs += g;
}

template <int Term, typename T>
__device__ void side_loop(const T* __restrict__ x, T* __restrict__ d, int64_t len, T p, T shift, T dscale, T& ls,
                          T& gs) {
  for (int64_t i = threadIdx.x; i < len; i += kThreads) side_element<Term>(x, d, i, p, shift, dscale, ls, gs);
}

template <typename T>
__device__ void side(const GanSide& s, const T* x, T* d, int64_t len, T shift, T dscale, T& ls, T& gs) {
  const T p = T(s.param);
  switch (s.term) {
    case kGanTermBce: side_loop<kGanTermBce>(x, d, len, p, shift, dscale, ls, gs); break;
    case kGanTermSquare: side_loop<kGanTermSquare>(x, d, len, p, shift, dscale, ls, gs); break;
    case kGanTermHinge: side_loop<kGanTermHinge>(x, d, len, p, shift, dscale, ls, gs); break;
    case kGanTermLinear: side_loop<kGanTermLinear>(x, d, len, p, shift, dscale, ls, gs); break;
    default: break;
  }
}

template <typename T>
__global__ void loss_chunks_kernel(GanLossArgs<T> a) {
  __shared__ T buf[kGanSlots * kThreads];
  const GanLossShape& s = a.s;
  const ChunkRange k = chunk_range(blockIdx.x, s.M);
  const int64_t off = k.n * s.M + k.begin;
  const int64_t chunks = s.N * gan_chunks_per_sample(s.M);
  T shift_real = T(0), shift_fake = T(0);
  if (s.relativistic) {  // real is taken relative to fake's mean and the other way round
    shift_real = a.workspace[chunks * kGanSlots + 1];
    shift_fake = a.workspace[chunks * kGanSlots + 0];
  }
  const T dscale = T(s.scale) * (a.weight ? a.weight[k.n] : T(1)) / T(s.M);
  T v[kGanSlots] = {T(0), T(0), T(0), T(0)};
  if (a.real) side(s.real, a.real + off, a.d_real ? a.d_real + off : nullptr, k.len, shift_real, dscale, v[0], v[2]);
  if (a.fake) side(s.fake, a.fake + off, a.d_fake ? a.d_fake + off : nullptr, k.len, shift_fake, dscale, v[1], v[3]);
  block_sum<kGanSlots>(v, buf);
  if (threadIdx.x == 0)
    for (int j = 0; j < kGanSlots; ++j) a.workspace[blockIdx.x * kGanSlots + j] = v[j];
}

template <typename T>
__global__ void loss_samples_kernel(GanLossArgs<T> a) {
  __shared__ T buf[kThreads];
  const GanLossShape& s = a.s;
  const int64_t per = gan_chunks_per_sample(s.M);
  T v[1] = {T(0)};
  for (int64_t n = threadIdx.x; n < s.N; n += kThreads) {
    T loss = T(0), dr = T(0), df = T(0);
    for (int64_t b = 0; b < per; ++b) {
      const T* ws = a.workspace + (n * per + b) * kGanSlots;
      loss += ws[0] + ws[1];
      dr += ws[2];
      df += ws[3];
    }
    const T w = a.weight ? a.weight[n] : T(1);
    const T value = T(s.scale) * w * (loss / T(s.M));
    a.per_sample[n] = value;
    v[0] += value;
    if (a.dsum_real) a.dsum_real[n] = dr;
    if (a.dsum_fake) a.dsum_fake[n] = df;
  }
  block_sum<1>(v, buf);
  if (threadIdx.x == 0) *a.total = v[0];
}

template <typename T>
__global__ void square_chunks_kernel(const T* __restrict__ g, int64_t M, T* __restrict__ ws) {
  __shared__ T buf[kThreads];
  const ChunkRange k = chunk_range(blockIdx.x, M);
  const T* x = g + k.n * M + k.begin;
  T v[1] = {T(0)};
  for (int64_t i = threadIdx.x; i < k.len; i += kThreads) v[0] += x[i] * x[i];
  block_sum<1>(v, buf);
  if (threadIdx.x == 0) ws[blockIdx.x] = v[0];
}

template <typename T>
__global__ void penalty_samples_kernel(GanPenaltyArgs<T> a) {
  __shared__ T buf[kThreads];
  const int64_t per = gan_chunks_per_sample(a.s.M);
  T v[1] = {T(0)};
  for (int64_t n = threadIdx.x; n < a.s.N; n += kThreads) {
    T sq = T(0);
    for (int64_t b = 0; b < per; ++b) sq += a.workspace[n * per + b];
    gan_penalty_of(sq, a.s.center, a.s.scale, a.per_sample[n], a.coef[n]);
    v[0] += a.per_sample[n];
  }
  block_sum<1>(v, buf);
  if (threadIdx.x == 0) *a.total = v[0];
}

unsigned int grid_of(int64_t chunks, const char* what) {
  if (chunks > int64_t(INT32_MAX)) throw std::runtime_error(std::string("medkern ") + what + ": input too large");
  return static_cast<unsigned int>(chunks);
}

}  // namespace

template <typename T>
void gan_loss_forward(const GanLossArgs<T>& a, intptr_t stream) {
  const char* what = "gan_loss_forward";
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const int64_t chunks = a.s.N * gan_chunks_per_sample(a.s.M);
  const unsigned int grid = grid_of(chunks, what);
  if (a.s.relativistic) {
    chunk_sums_kernel<T><<<grid, kThreads, 0, st>>>(a.real, a.fake, a.s.M, a.workspace);
    check(cudaGetLastError(), what);
    means_kernel<T><<<1, kThreads, 0, st>>>(chunks, T(a.s.N) * T(a.s.M), a.workspace);
    check(cudaGetLastError(), what);
  }
  loss_chunks_kernel<T><<<grid, kThreads, 0, st>>>(a);
  check(cudaGetLastError(), what);
  loss_samples_kernel<T><<<1, kThreads, 0, st>>>(a);
  check(cudaGetLastError(), what);
}

template <typename T>
void gan_penalty_forward(const GanPenaltyArgs<T>& a, intptr_t stream) {
  const char* what = "gan_penalty_forward";
  cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  const unsigned int grid = grid_of(a.s.N * gan_chunks_per_sample(a.s.M), what);
  square_chunks_kernel<T><<<grid, kThreads, 0, st>>>(a.g, a.s.M, a.workspace);
  check(cudaGetLastError(), what);
  penalty_samples_kernel<T><<<1, kThreads, 0, st>>>(a);
  check(cudaGetLastError(), what);
}

template void gan_loss_forward<float>(const GanLossArgs<float>&, intptr_t);
template void gan_loss_forward<double>(const GanLossArgs<double>&, intptr_t);
template void gan_penalty_forward<float>(const GanPenaltyArgs<float>&, intptr_t);
template void gan_penalty_forward<double>(const GanPenaltyArgs<double>&, intptr_t);

}  // namespace medkern::cuda

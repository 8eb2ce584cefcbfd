// GRU backward through time on CUDA, two launches per step: the fused pointwise pass (gate gradients of
// both sides) and dh = dh z + dgh W_hh (dh carried in place in dh0).
#include "rnn.cuh"

namespace medkern::cuda {
namespace {

template <typename T>
__global__ void gru_step_backward(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= s.H) return;
  const int64_t H = s.H;
  T* dgx = a.dgx + (t * s.B + b) * s.ldgx;
  T* dgh = a.dgh + (t * s.B + b) * 3 * H;
  if (!rnn_step_valid(a.lengths, b, t)) {
    for (int q = 0; q < 3; ++q) dgx[q * H + j] = dgh[q * H + j] = T(0);
    return;
  }
  const T* g = a.gates + (t * s.B + b) * 4 * H;
  T dr, dz, dn, dhn, direct;
  GruPoint<T, CudaMath<T>>::backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j],
                                     a.hs[(rnn_prev_slot(s, t) * s.B + b) * H + j], state_grad(a, b, j, t), dr, dz,
                                     dn, dhn, direct);
  dgx[j] = dr; dgx[H + j] = dz; dgx[2 * H + j] = dn;
  dgh[j] = dr; dgh[H + j] = dz; dgh[2 * H + j] = dhn;
}

template <typename T>
__global__ void gru_carry_backward(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= s.H || !rnn_step_valid(a.lengths, b, t)) return;
  const T z = a.gates[(t * s.B + b) * 4 * s.H + s.H + p];
  a.dh0[b * s.H + p] = state_grad(a, b, p, t) * z + dot_col(a.w_hh, p, s.H, a.dgh + (t * s.B + b) * 3 * s.H, 3 * s.H);
}

}  // namespace

template <typename T>
void gru_backward(const RnnArgs<T>& a, intptr_t stream) {
  const cudaStream_t st = as_stream(stream);
  rnn_check(cudaMemcpyAsync(a.dh0, a.dhn, sizeof(T) * a.s.B * a.s.H, cudaMemcpyDeviceToDevice, st), "gru_backward");
  for (int64_t step = a.s.T - 1; step >= 0; --step) {
    const int64_t t = a.s.reverse ? a.s.T - 1 - step : step;
    gru_step_backward<T><<<rnn_grid(a.s.B, a.s.H), kRnnThreads, 0, st>>>(a, t);
    gru_carry_backward<T><<<rnn_grid(a.s.B, a.s.H), kRnnThreads, 0, st>>>(a, t);
  }
  rnn_check(cudaGetLastError(), "gru_backward");
}

template void gru_backward<float>(const RnnArgs<float>&, intptr_t);
template void gru_backward<double>(const RnnArgs<double>&, intptr_t);

}  // namespace medkern::cuda

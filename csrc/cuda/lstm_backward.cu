// LSTM backward through time on CUDA, two launches per step: the fused pointwise pass (gate gradients,
// dc carried in place in dc0) and the product dh = dgates W_hh (dh carried in place in dh0).
#include "rnn.cuh"

namespace medkern::cuda {
namespace {

template <typename T>
__global__ void lstm_step_backward(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= s.H) return;
  const int64_t H = s.H;
  T* dg = a.dgx + (t * s.B + b) * s.ldgx;
  if (!rnn_step_valid(a.lengths, b, t)) {
    for (int q = 0; q < 4; ++q) dg[q * H + j] = T(0);
    return;
  }
  T dh = T(0);
  if (s.has_proj) {
    for (int64_t p = 0; p < s.P; ++p) dh += state_grad(a, b, p, t) * a.w_hr[p * H + j];
  } else {
    dh = state_grad(a, b, j, t);
  }
  const T* g = a.gates + (t * s.B + b) * 4 * H;
  T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
  T dc = a.dc0[b * H + j];
  LstmPoint<T, CudaMath<T>>::backward(i, f, gg, o, a.cs[(rnn_prev_slot(s, t) * s.B + b) * H + j],
                                      a.cs[(rnn_next_slot(s, t) * s.B + b) * H + j], dh, dc);
  a.dc0[b * H + j] = dc;
  dg[j] = i; dg[H + j] = f; dg[2 * H + j] = gg; dg[3 * H + j] = o;
}

template <typename T>
__global__ void lstm_carry_backward(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= s.P) return;
  const bool valid = rnn_step_valid(a.lengths, b, t);
  if (s.has_proj) a.dhp[(t * s.B + b) * s.P + p] = valid ? state_grad(a, b, p, t) : T(0);
  if (valid) a.dh0[b * s.P + p] = dot_col(a.w_hh, p, s.P, a.dgx + (t * s.B + b) * s.ldgx, 4 * s.H);
}

}  // namespace

template <typename T>
void lstm_backward(const RnnArgs<T>& a, intptr_t stream) {
  const cudaStream_t st = as_stream(stream);
  rnn_check(cudaMemcpyAsync(a.dh0, a.dhn, sizeof(T) * a.s.B * a.s.P, cudaMemcpyDeviceToDevice, st), "lstm_backward");
  rnn_check(cudaMemcpyAsync(a.dc0, a.dcn, sizeof(T) * a.s.B * a.s.H, cudaMemcpyDeviceToDevice, st), "lstm_backward");
  for (int64_t step = a.s.T - 1; step >= 0; --step) {
    const int64_t t = a.s.reverse ? a.s.T - 1 - step : step;
    lstm_step_backward<T><<<rnn_grid(a.s.B, a.s.H), kRnnThreads, 0, st>>>(a, t);
    lstm_carry_backward<T><<<rnn_grid(a.s.B, a.s.P), kRnnThreads, 0, st>>>(a, t);
  }
  rnn_check(cudaGetLastError(), "lstm_backward");
}

template void lstm_backward<float>(const RnnArgs<float>&, intptr_t);
template void lstm_backward<double>(const RnnArgs<double>&, intptr_t);

}  // namespace medkern::cuda

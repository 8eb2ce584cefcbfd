// LSTM forward on CUDA: per step one launch for the recurrent products and the fused pointwise update of
// every (row, unit), and with a projection one launch for h = W_hr hraw.
#include "rnn.cuh"

namespace medkern::cuda {
namespace {

template <typename T>
__global__ void lstm_step(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= s.H) return;
  const int64_t H = s.H, P = s.P, prev = rnn_prev_slot(s, t), next = rnn_next_slot(s, t);
  const T* h_prev = a.hs + (prev * s.B + b) * P;
  const T c_prev = a.cs[(prev * s.B + b) * H + j];
  T* c_next = a.cs + (next * s.B + b) * H + j;
  const bool valid = rnn_step_valid(a.lengths, b, t);
  if (!valid) {
    *c_next = c_prev;
    if (a.gates) for (int q = 0; q < 4; ++q) a.gates[(t * s.B + b) * 4 * H + q * H + j] = T(0);
    if (a.hraw) a.hraw[(t * s.B + b) * H + j] = T(0);
    if (!s.has_proj) {
      a.hs[(next * s.B + b) * P + j] = h_prev[j];
      a.out[(t * s.B + b) * s.ldo + j] = T(0);
    }
    return;
  }
  const T* gx = a.gx + (t * s.B + b) * s.ldgx;
  T i = gx[j] + dot_row(a.w_hh, j, h_prev, P), f = gx[H + j] + dot_row(a.w_hh, H + j, h_prev, P);
  T g = gx[2 * H + j] + dot_row(a.w_hh, 2 * H + j, h_prev, P);
  T o = gx[3 * H + j] + dot_row(a.w_hh, 3 * H + j, h_prev, P);
  T c, h;
  LstmPoint<T, CudaMath<T>>::forward(i, f, g, o, c_prev, c, h);
  *c_next = c;
  if (a.gates) {
    T* sv = a.gates + (t * s.B + b) * 4 * H;
    sv[j] = i; sv[H + j] = f; sv[2 * H + j] = g; sv[3 * H + j] = o;
  }
  if (s.has_proj) {
    a.hraw[(t * s.B + b) * H + j] = h;
  } else {
    a.hs[(next * s.B + b) * P + j] = h;
    a.out[(t * s.B + b) * s.ldo + j] = h;
  }
}

// h_next = W_hr hraw (valid rows) or h_prev (rows past their length).
template <typename T>
__global__ void lstm_project(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= s.P) return;
  const int64_t prev = rnn_prev_slot(s, t), next = rnn_next_slot(s, t);
  const bool valid = rnn_step_valid(a.lengths, b, t);
  const T h = valid ? dot_row(a.w_hr, p, a.hraw + (t * s.B + b) * s.H, s.H) : a.hs[(prev * s.B + b) * s.P + p];
  a.hs[(next * s.B + b) * s.P + p] = h;
  a.out[(t * s.B + b) * s.ldo + p] = valid ? h : T(0);
}

}  // namespace

template <typename T>
void lstm_forward(const RnnArgs<T>& args, intptr_t stream) {
  RnnArgs<T> a = args;
  const cudaStream_t st = as_stream(stream);
  T* scratch = nullptr;
  if (a.s.has_proj && !a.hraw) {  // inference with a projection still needs hraw between the two launches
    rnn_check(cudaMallocAsync(&scratch, sizeof(T) * a.s.T * a.s.B * a.s.H, st), "lstm_forward");
    a.hraw = scratch;
  }
  for (int64_t step = 0; step < a.s.T; ++step) {
    const int64_t t = a.s.reverse ? a.s.T - 1 - step : step;
    lstm_step<T><<<rnn_grid(a.s.B, a.s.H), kRnnThreads, 0, st>>>(a, t);
    if (a.s.has_proj) lstm_project<T><<<rnn_grid(a.s.B, a.s.P), kRnnThreads, 0, st>>>(a, t);
  }
  rnn_check(cudaGetLastError(), "lstm_forward");
  if (scratch) rnn_check(cudaFreeAsync(scratch, st), "lstm_forward");
}

template void lstm_forward<float>(const RnnArgs<float>&, intptr_t);
template void lstm_forward<double>(const RnnArgs<double>&, intptr_t);

}  // namespace medkern::cuda

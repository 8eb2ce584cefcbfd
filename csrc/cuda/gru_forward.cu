// GRU forward on CUDA: per step one launch computing each (row, unit)'s three recurrent dot products
// (with b_hh, which the reset gate multiplies) and the fused pointwise update.
#include "rnn.cuh"

namespace medkern::cuda {
namespace {

template <typename T>
__global__ void gru_step(RnnArgs<T> a, int64_t t) {
  const RnnShape& s = a.s;
  const int64_t b = blockIdx.y, j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= s.H) return;
  const int64_t H = s.H, prev = rnn_prev_slot(s, t), next = rnn_next_slot(s, t);
  const T* h_prev = a.hs + (prev * s.B + b) * H;
  T* saved = a.gates ? a.gates + (t * s.B + b) * 4 * H : nullptr;
  T h = h_prev[j];
  if (rnn_step_valid(a.lengths, b, t)) {
    const T* gx = a.gx + (t * s.B + b) * s.ldgx;
    T hh[3];
    for (int q = 0; q < 3; ++q) hh[q] = (a.b_hh ? a.b_hh[q * H + j] : T(0)) + dot_row(a.w_hh, q * H + j, h_prev, H);
    T r, z, n;
    GruPoint<T, CudaMath<T>>::forward(gx[j], gx[H + j], gx[2 * H + j], hh[0], hh[1], hh[2], h_prev[j], r, z, n, h);
    if (saved) { saved[j] = r; saved[H + j] = z; saved[2 * H + j] = n; saved[3 * H + j] = hh[2]; }
    a.out[(t * s.B + b) * s.ldo + j] = h;
  } else {
    if (saved) for (int q = 0; q < 4; ++q) saved[q * H + j] = T(0);
    a.out[(t * s.B + b) * s.ldo + j] = T(0);
  }
  a.hs[(next * s.B + b) * H + j] = h;
}

}  // namespace

template <typename T>
void gru_forward(const RnnArgs<T>& a, intptr_t stream) {
  const cudaStream_t st = as_stream(stream);
  for (int64_t step = 0; step < a.s.T; ++step) {
    const int64_t t = a.s.reverse ? a.s.T - 1 - step : step;
    gru_step<T><<<rnn_grid(a.s.B, a.s.H), kRnnThreads, 0, st>>>(a, t);
  }
  rnn_check(cudaGetLastError(), "gru_forward");
}

template void gru_forward<float>(const RnnArgs<float>&, intptr_t);
template void gru_forward<double>(const RnnArgs<double>&, intptr_t);

}  // namespace medkern::cuda

// GRU forward on the CPU: the recurrence over a sequence, and one cell step for inference. torch's GRU
// applies the reset gate to the hidden projection including its bias, so the hidden side's products
// (with b_hh) are kept apart from the input side's.
#include "rnn.h"

namespace medkern::cpu {

namespace {

// One row of `units` hidden units: gx (r, z, n input side, H apart), gh (hidden side with b_hh), h_prev -> h.
// `saved` (4H: r, z, n and the hidden side's n part) may be null.
template <typename T>
void gru_row(const T* gx, const T* gh, int64_t H, int64_t units, const T* h_prev, T* h, T* saved) {
  for_lanes<T>(units, [&](int64_t j, auto tag) {
    using V = decltype(tag);
    V xr, xz, xn, hr, hz, hn, r, z, n, hv;
    load_gates<V>(gx, H, j, xr, xz, xn);
    load_gates<V>(gh, H, j, hr, hz, hn);
    GruPoint<V, CpuMath<T, V>>::forward(xr, xz, xn, hr, hz, hn, load_as<V>(h_prev + j), r, z, n, hv);
    store_as<V>(h + j, hv);
    if (saved) store_gates<V>(saved, H, j, r, z, n, hn);
  });
}

}  // namespace

template <typename T>
void gru_forward(const RnnArgs<T>& a) {
  const RnnShape& s = a.s;
  const int64_t B = s.B, H = s.H, G = 3 * H;
  const PackedB<T> whh(a.w_hh, H, G, H, 1);  // B(k, n) = W_hh[n, k]
  Buffer<T> gh_buf = alloc_buffer<T>(B * G);
  for_batch_chunks<T>(B, [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    T* gh = gh_buf.get() + b0 * G;
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = s.reverse ? s.T - 1 - step : step;
      const T* h_prev = a.hs + (rnn_prev_slot(s, t) * B + b0) * H;
      T* h_next = a.hs + (rnn_next_slot(s, t) * B + b0) * H;
      rnn_gemm<T>(m, h_prev, H, whh, gh, G, nullptr, 0, a.b_hh);
      for (int64_t r = 0; r < m; ++r) {
        T* out = a.out + (t * B + b0 + r) * s.ldo;
        T* saved = a.gates ? a.gates + (t * B + b0 + r) * 4 * H : nullptr;
        if (rnn_step_valid(a.lengths, b0 + r, t)) {
          gru_row(a.gx + (t * B + b0 + r) * s.ldgx, gh + r * G, H, H, h_prev + r * H, h_next + r * H, saved);
          copy_row(out, h_next + r * H, H);
        } else {  // past this row's length: state carried over, output zero
          copy_row(h_next + r * H, h_prev + r * H, H);
          zero_row(out, H);
          if (saved) zero_row(saved, 4 * H);
        }
      }
    }
  });
}

template <typename T>
void gru_cell_forward(const RnnCellArgs<T>& a) {
  const int64_t H = a.H, G = 3 * H;
  T *gx = a.scratch, *gh = a.scratch + a.B * G;
  for_unit_chunks<T>(H, G * (a.I + H), [&](int64_t j0, int64_t j1) {
    cell_gate_products(a.B, 3, H, j0, j1, a.I, a.x, a.w_ih, a.b_ih, false, gx);
    cell_gate_products(a.B, 3, H, j0, j1, H, a.h, a.w_hh, a.b_hh, false, gh);
    for (int64_t b = 0; b < a.B; ++b)
      gru_row<T>(gx + b * G + j0, gh + b * G + j0, H, j1 - j0, a.h + b * H + j0, a.h_out + b * H + j0, nullptr);
  });
}

template void gru_forward<float>(const RnnArgs<float>&);
template void gru_forward<double>(const RnnArgs<double>&);
template void gru_cell_forward<float>(const RnnCellArgs<float>&);
template void gru_cell_forward<double>(const RnnCellArgs<double>&);

}  // namespace medkern::cpu

// LSTM forward on the CPU: the recurrence over a sequence, and one cell step for inference.
#include "rnn.h"

namespace medkern::cpu {

namespace {

// Gates of one row (pre-activations i, f, g, o, H apart) become activations for `units` hidden units; writes
// c and h = o tanh(c).
template <typename T>
void lstm_row(T* g, int64_t H, int64_t units, const T* c_prev, T* c, T* h) {
  for_lanes<T>(units, [&](int64_t j, auto tag) {
    using V = decltype(tag);
    V i, f, gg, o, cn, hn;
    load_gates<V>(g, H, j, i, f, gg, o);
    LstmPoint<V, CpuMath<T, V>>::forward(i, f, gg, o, load_as<V>(c_prev + j), cn, hn);
    store_gates<V>(g, H, j, i, f, gg, o);
    store_as<V>(c + j, cn);
    store_as<V>(h + j, hn);
  });
}

}  // namespace

template <typename T>
void lstm_forward(const RnnArgs<T>& a) {
  const RnnShape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, G = 4 * H;
  const PackedB<T> whh(a.w_hh, P, G, P, 1);  // B(k, n) = W_hh[n, k]
  const PackedB<T> whr = s.has_proj ? PackedB<T>(a.w_hr, H, P, H, 1) : PackedB<T>(nullptr, 0, 0, 0, 0);
  Buffer<T> gate_scratch = alloc_buffer<T>(a.gates ? 0 : B * G);
  Buffer<T> hraw_scratch = alloc_buffer<T>(s.has_proj && !a.hraw ? B * H : 0);
  for_batch_chunks<T>(B, [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = s.reverse ? s.T - 1 - step : step;
      const T* h_prev = a.hs + (rnn_prev_slot(s, t) * B + b0) * P;
      const T* c_prev = a.cs + (rnn_prev_slot(s, t) * B + b0) * H;
      T* h_next = a.hs + (rnn_next_slot(s, t) * B + b0) * P;
      T* c_next = a.cs + (rnn_next_slot(s, t) * B + b0) * H;
      T* gates = a.gates ? a.gates + (t * B + b0) * G : gate_scratch.get() + b0 * G;
      T* hraw = !s.has_proj ? h_next : a.hraw ? a.hraw + (t * B + b0) * H : hraw_scratch.get() + b0 * H;
      rnn_gemm<T>(m, h_prev, P, whh, gates, G, a.gx + (t * B + b0) * s.ldgx, s.ldgx);
      for (int64_t r = 0; r < m; ++r) lstm_row(gates + r * G, H, H, c_prev + r * H, c_next + r * H, hraw + r * H);
      if (s.has_proj) rnn_gemm<T>(m, hraw, H, whr, h_next, P);
      for (int64_t r = 0; r < m; ++r) {
        T* out = a.out + (t * B + b0 + r) * s.ldo;
        if (rnn_step_valid(a.lengths, b0 + r, t)) {
          copy_row(out, h_next + r * P, P);
          continue;
        }
        // Past this row's length: the state carries over unchanged, the output is zero, and the saved
        // activations are zero so the backward pass reads defined values.
        copy_row(h_next + r * P, h_prev + r * P, P);
        copy_row(c_next + r * H, c_prev + r * H, H);
        zero_row(out, P);
        if (a.gates) zero_row(gates + r * G, G);
        if (a.hraw) zero_row(hraw + r * H, H);
      }
    }
  });
}

template <typename T>
void lstm_cell_forward(const RnnCellArgs<T>& a) {
  const int64_t H = a.H, G = 4 * H;
  for_unit_chunks<T>(H, G * (a.I + H), [&](int64_t j0, int64_t j1) {
    cell_gate_products(a.B, 4, H, j0, j1, a.I, a.x, a.w_ih, a.b_ih, false, a.scratch);
    cell_gate_products(a.B, 4, H, j0, j1, H, a.h, a.w_hh, a.b_hh, true, a.scratch);
    for (int64_t b = 0; b < a.B; ++b)
      lstm_row(a.scratch + b * G + j0, H, j1 - j0, a.c + b * H + j0, a.c_out + b * H + j0, a.h_out + b * H + j0);
  });
}

template void lstm_forward<float>(const RnnArgs<float>&);
template void lstm_forward<double>(const RnnArgs<double>&);
template void lstm_cell_forward<float>(const RnnCellArgs<float>&);
template void lstm_cell_forward<double>(const RnnCellArgs<double>&);

}  // namespace medkern::cpu

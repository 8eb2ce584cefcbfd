// LSTM backward through time on the CPU. Per step: the fused pointwise pass turns (dh, dc) into the gate
// gradients, and one small product with W_hh carries dh to the previous step. The weight gradients are
// left to the caller as large products over all steps (dgx^T x, dgx^T h_prev, dhp^T hraw).
#include "rnn.h"

namespace medkern::cpu {

namespace {

// Gradients of one row's gate pre-activations from the saved activations; dc becomes d c_prev.
template <typename T>
void lstm_row_backward(const T* g, int64_t H, const T* c_prev, const T* c, const T* dh, T* dc, T* dg) {
  for_lanes<T>(H, [&](int64_t j, auto tag) {
    using V = decltype(tag);
    V i, f, gg, o;
    load_gates<V>(g, H, j, i, f, gg, o);
    V dcv = load_as<V>(dc + j);
    LstmPoint<V, CpuMath<T, V>>::backward(i, f, gg, o, load_as<V>(c_prev + j), load_as<V>(c + j),
                                          load_as<V>(dh + j), dcv);
    store_as<V>(dc + j, dcv);
    store_gates<V>(dg, H, j, i, f, gg, o);
  });
}

}  // namespace

template <typename T>
void lstm_backward(const RnnArgs<T>& a) {
  const RnnShape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, G = 4 * H;
  const PackedB<T> whh(a.w_hh, G, P, 1, P);  // B(k, n) = W_hh[k, n]
  const PackedB<T> whr = s.has_proj ? PackedB<T>(a.w_hr, P, H, 1, H) : PackedB<T>(nullptr, 0, 0, 0, 0);
  Buffer<T> dh_buf = alloc_buffer<T>(2 * B * P), dc_buf = alloc_buffer<T>(B * H);
  Buffer<T> dhraw_buf = alloc_buffer<T>(s.has_proj ? B * H : 0);
  for_batch_chunks<T>(B, [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    T* dh = dh_buf.get() + b0 * P;            // gradient of the state after the current step
    T* dh_next = dh_buf.get() + (B + b0) * P;  // ... and of the state before it
    T* dc = dc_buf.get() + b0 * H;
    copy_row(dh, a.dhn + b0 * P, m * P);
    copy_row(dc, a.dcn + b0 * H, m * H);
    for (int64_t step = s.T - 1; step >= 0; --step) {
      const int64_t t = s.reverse ? s.T - 1 - step : step;
      for (int64_t r = 0; r < m; ++r)
        if (rnn_step_valid(a.lengths, b0 + r, t)) add_row(dh + r * P, a.dout + (t * B + b0 + r) * s.ldo, P);
      const T* dh_raw = dh;
      if (s.has_proj) {
        copy_row(a.dhp + (t * B + b0) * P, dh, m * P);
        rnn_gemm<T>(m, dh, P, whr, dhraw_buf.get() + b0 * H, H);
        dh_raw = dhraw_buf.get() + b0 * H;
      }
      const T* gates = a.gates + (t * B + b0) * G;
      const T* c_prev = a.cs + (rnn_prev_slot(s, t) * B + b0) * H;
      const T* c = a.cs + (rnn_next_slot(s, t) * B + b0) * H;
      T* dg = a.dgx + (t * B + b0) * s.ldgx;
      for (int64_t r = 0; r < m; ++r) {
        if (rnn_step_valid(a.lengths, b0 + r, t))
          lstm_row_backward(gates + r * G, H, c_prev + r * H, c + r * H, dh_raw + r * H, dc + r * H, dg + r * s.ldgx);
        else
          zero_row(dg + r * s.ldgx, G);
      }
      rnn_gemm<T>(m, dg, s.ldgx, whh, dh_next, P);
      // Rows past their length pass their gradient through unchanged (the state was carried over).
      for (int64_t r = 0; r < m; ++r) {
        if (!rnn_step_valid(a.lengths, b0 + r, t)) {
          copy_row(dh_next + r * P, dh + r * P, P);
          if (s.has_proj) zero_row(a.dhp + (t * B + b0 + r) * P, P);
        }
      }
      std::swap(dh, dh_next);
    }
    copy_row(a.dh0 + b0 * P, dh, m * P);
    copy_row(a.dc0 + b0 * H, dc, m * H);
  });
}

template void lstm_backward<float>(const RnnArgs<float>&);
template void lstm_backward<double>(const RnnArgs<double>&);

}  // namespace medkern::cpu

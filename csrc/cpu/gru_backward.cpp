// GRU backward through time on the CPU: per step one fused pointwise pass and one small product with
// W_hh; the weight gradients are left to the caller as large products over all steps.
#include "rnn.h"

namespace medkern::cpu {

namespace {

// One row: from the saved r, z, n, hn, h_prev and dh, writes dgx (r, z, n input side), dgh (hidden
// side) and the part of d h_prev that bypasses W_hh.
template <typename T>
void gru_row_backward(const T* saved, int64_t H, const T* h_prev, const T* dh, T* dgx, T* dgh, T* dh_direct) {
  for_lanes<T>(H, [&](int64_t j, auto tag) {
    using V = decltype(tag);
    V r, z, n, hn, dr, dz, dn, dhn, dd;
    load_gates<V>(saved, H, j, r, z, n, hn);
    GruPoint<V, CpuMath<T, V>>::backward(r, z, n, hn, load_as<V>(h_prev + j), load_as<V>(dh + j), dr, dz, dn, dhn, dd);
    store_gates<V>(dgx, H, j, dr, dz, dn);
    store_gates<V>(dgh, H, j, dr, dz, dhn);
    store_as<V>(dh_direct + j, dd);
  });
}

}  // namespace

template <typename T>
void gru_backward(const RnnArgs<T>& a) {
  const RnnShape& s = a.s;
  const int64_t B = s.B, H = s.H, G = 3 * H;
  const PackedB<T> whh(a.w_hh, G, H, 1, H);  // B(k, n) = W_hh[k, n]
  Buffer<T> dh_buf = alloc_buffer<T>(2 * B * H);
  for_batch_chunks<T>(B, [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    T* dh = dh_buf.get() + b0 * H;
    T* direct = dh_buf.get() + (B + b0) * H;
    copy_row(dh, a.dhn + b0 * H, m * H);
    for (int64_t step = s.T - 1; step >= 0; --step) {
      const int64_t t = s.reverse ? s.T - 1 - step : step;
      const T* h_prev = a.hs + (rnn_prev_slot(s, t) * B + b0) * H;
      T* dgh = a.dgh + (t * B + b0) * G;
      for (int64_t r = 0; r < m; ++r) {
        T* dgx = a.dgx + (t * B + b0 + r) * s.ldgx;
        if (rnn_step_valid(a.lengths, b0 + r, t)) {
          add_row(dh + r * H, a.dout + (t * B + b0 + r) * s.ldo, H);
          gru_row_backward(a.gates + (t * B + b0 + r) * 4 * H, H, h_prev + r * H, dh + r * H, dgx, dgh + r * G,
                           direct + r * H);
        } else {  // past this row's length: no gate gradient, dh passes through
          zero_row(dgx, G);
          zero_row(dgh + r * G, G);
          copy_row(direct + r * H, dh + r * H, H);
        }
      }
      rnn_gemm<T>(m, dgh, G, whh, dh, H, direct, H);
    }
    copy_row(a.dh0 + b0 * H, dh, m * H);
  });
}

template void gru_backward<float>(const RnnArgs<float>&);
template void gru_backward<double>(const RnnArgs<double>&);

}  // namespace medkern::cpu

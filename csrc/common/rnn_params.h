#pragma once
// One params struct for the recurrent family, and the gate math every device shares.
//
// A call runs one layer in one direction over a time-major sequence. The input projection for all steps
// (gx = x W_ih^T + biases) is computed before the call as one large matrix product; the kernel runs the
// recurrence: per step one small product with W_hh and one fused pointwise pass over all gates.
//
// States are kept time-ordered in hs/cs of T+1 slots: the forward direction reads slot t and writes
// slot t+1 at step t, the reverse direction reads slot t+1 and writes slot t. So the state before step t
// is hs[t] (forward) or hs[t+1] (reverse), and the final state is hs[T] or hs[0].
//
// Variable lengths are masks, not sorting: at step t >= lengths[b] row b keeps its state, emits zeros and
// gets no gradient, which is what torch's packed sequences compute.
#include <cstdint>

#include "macros.h"

namespace medkern {

enum class RnnCell { lstm, gru };

struct RnnShape {
  int64_t T, B;
  int64_t H;        // hidden size (cell state of the LSTM, state of the GRU)
  int64_t P;        // recurrent state size: proj_size of an LSTM with projection, else H
  int64_t ldgx;     // row stride of gx / dgx (elements between batch rows): G*H, or more for a shared buffer
  int64_t ldo;      // row stride of out / dout
  bool reverse;
  bool has_proj;
};

template <typename T>
struct RnnArgs {
  RnnShape s;
  // forward inputs
  const T* gx;        // [T, B, ldgx]: input projection with biases (LSTM: b_ih + b_hh; GRU: b_ih only)
  const T* w_hh;      // [G*H, P]
  const T* b_hh;      // [G*H] GRU (applied inside r * (W_hn h + b_hn)); nullptr for none or for the LSTM
  const T* w_hr;      // [P, H] LSTM projection or nullptr
  const int64_t* lengths;  // [B] or nullptr (all T)
  // forward outputs
  T* out;             // [T, B, ldo], P values per row
  T* hs;              // [T+1, B, P]
  T* cs;              // [T+1, B, H] (LSTM)
  T* gates;           // [T, B, 4H] saved for backward, or nullptr (inference).
                      // LSTM: activated i, f, g, o. GRU: r, z, n, and W_hn h + b_hn.
  T* hraw;            // [T, B, H] LSTM with projection: o * tanh(c) before projecting; or nullptr
  // backward inputs (plus hs, cs, gates, w_hh, w_hr, lengths from above)
  const T* dout;      // [T, B, ldo]
  const T* dhn;       // [B, P]
  const T* dcn;       // [B, H] (LSTM)
  // backward outputs
  T* dgx;             // [T, B, ldgx]: gradient of the gate pre-activations on the input side
  T* dgh;             // [T, B, 3H] GRU: the same on the hidden side (differs in the n gate)
  T* dhp;             // [T, B, P] LSTM with projection: gradient of each projected state
  T* dh0;             // [B, P]
  T* dc0;             // [B, H] (LSTM)
};

// One inference step of a cell (the no-grad fast path of LSTMCell / GRUCell), weights unpacked.
template <typename T>
struct RnnCellArgs {
  int64_t B, I, H;
  const T *x, *h, *c, *w_ih, *w_hh, *b_ih, *b_hh;  // biases may be null; c for the LSTM only
  T *h_out, *c_out;
  T* scratch;  // B * 4H (LSTM) or B * 6H (GRU)
};

MEDKERN_HD bool rnn_step_valid(const int64_t* lengths, int64_t b, int64_t t) { return !lengths || t < lengths[b]; }
// The hs/cs slots read and written at step t.
MEDKERN_HD int64_t rnn_prev_slot(const RnnShape& s, int64_t t) { return s.reverse ? t + 1 : t; }
MEDKERN_HD int64_t rnn_next_slot(const RnnShape& s, int64_t t) { return s.reverse ? t : t + 1; }

// The gate math, written once for scalars and vectors (GCC vector types on the CPU, float/double on the
// GPU). `M` supplies sigmoid, tanh and one() for V. Gate order and equations are torch's.
template <class V, class M>
struct LstmPoint {
  // In: pre-activations i, f, g, o and c_prev. Out: activated gates (in place), c and h.
  MEDKERN_HD static void forward(V& i, V& f, V& g, V& o, V c_prev, V& c, V& h) {
    i = M::sigmoid(i);
    f = M::sigmoid(f);
    g = M::tanh(g);
    o = M::sigmoid(o);
    c = f * c_prev + i * g;
    h = o * M::tanh(c);
  }
  // In: activated gates, c_prev, c, dh (gradient of h), dc (of c, from the step after). Out: gradients of
  // the pre-activations (in the gate variables) and dc becomes the gradient of c_prev.
  MEDKERN_HD static void backward(V& i, V& f, V& g, V& o, V c_prev, V c, V dh, V& dc) {
    const V one = M::one();
    const V tc = M::tanh(c);
    const V dct = dc + dh * o * (one - tc * tc);
    const V di = dct * g, df = dct * c_prev, dg = dct * i, dox = dh * tc;
    dc = dct * f;
    i = di * i * (one - i);
    f = df * f * (one - f);
    g = dg * (one - g * g);
    o = dox * o * (one - o);
  }
};

template <class V, class M>
struct GruPoint {
  // In: input-side pre-activations xr, xz, xn (with b_ih), hidden-side hr, hz, hn (with b_hh), h_prev.
  // Out: r, z, n and the new state h.
  MEDKERN_HD static void forward(V xr, V xz, V xn, V hr, V hz, V hn, V h_prev, V& r, V& z, V& n, V& h) {
    const V one = M::one();
    r = M::sigmoid(xr + hr);
    z = M::sigmoid(xz + hz);
    n = M::tanh(xn + r * hn);
    h = (one - z) * n + z * h_prev;
  }
  // In: saved r, z, n, hn, h_prev, dh. Out: input-side gradients (dr, dz, dn), the hidden side's n
  // gradient (dhn = dn * r; its r and z gradients equal the input side's) and dh_prev's direct part.
  MEDKERN_HD static void backward(V r, V z, V n, V hn, V h_prev, V dh, V& dr, V& dz, V& dn, V& dhn,
                                  V& dh_direct) {
    const V one = M::one();
    dn = dh * (one - z) * (one - n * n);
    dz = dh * (h_prev - n) * z * (one - z);
    dr = dn * hn * r * (one - r);
    dhn = dn * r;
    dh_direct = dh * z;
  }
};

}  // namespace medkern

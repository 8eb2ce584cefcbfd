// Direct forward convolution for a few output channels. As a GEMM, K = 3 outputs would use 3 of the
// micro-kernel's 8 register rows while every input element is packed R*S times for just those 3 uses
// (measured: 64x32x28x28 -> 3, 3x3: 6 ms against torch's 2.4 ms). Here each output row keeps the K
// accumulator rows in L1 and adds w[k, c, r, s] times the input row, shifted by s, for every channel and
// kernel row: each input load serves all K outputs, and nothing is packed.
#include "conv2d_few_outputs.h"
#include "threading.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace medkern::cpu {
namespace {

// Output columns [q0, q0 + NB*L) of output row oh for the K channels, the sums held in registers across
// the whole reduction. Unit: stride 1 along the row, read straight from x; otherwise from a padded copy
// (a template flag: with the copy's memcpy call anywhere in the loop, GCC kept the sums in memory).
template <typename T, int K, int NB, bool Unit>
void output_block(const ConvShape& s, const T* x_n, const T* w_g, const T* bias_g, int64_t oh, int64_t q0,
                  T* padded, T* const* out, const Epilogue<T>& ep) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t Cg = s.c_per_group(), RS = s.R * s.S;
  V acc[K][NB];
  for (int k = 0; k < K; ++k)
    for (int b = 0; b < NB; ++b) acc[k][b] = Vec<T>::broadcast(bias_g ? bias_g[k] : T(0));
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t r = 0; r < s.R; ++r) {
      const int64_t ih = conv_in_coord(oh, r, s.stride_h, s.pad_h, s.dil_h);
      if (ih < 0 || ih >= s.H) continue;
      const T* x_row = x_n + (c * s.H + ih) * s.W;
      // Strided: the input row between zeros (written once per thread), gathered lane by lane.
      if constexpr (!Unit) std::memcpy(padded + s.pad_w, x_row, s.W * sizeof(T));
      for (int64_t sx = 0; sx < s.S; ++sx) {
        V wk[K], xv[NB];
        for (int k = 0; k < K; ++k) wk[k] = Vec<T>::broadcast(w_g[(k * Cg + c) * RS + r * s.S + sx]);
        for (int b = 0; b < NB; ++b) {
          if constexpr (Unit) {
            // x itself (a padded copy's vector loads, straddling the copy's stores, stalled on failed
            // store forwarding: 64x32x28x28 -> 3 took 4.8 ms), masked where the window hangs over the
            // row's ends.
            const int64_t first = q0 + b * L + sx * s.dil_w - s.pad_w;
            xv[b] = first >= 0 && first + L <= s.W
                        ? Vec<T>::load(x_row + first)
                        : Vec<T>::load_range(x_row, first, int(std::clamp<int64_t>(-first, 0, L)),
                                             int(std::clamp<int64_t>(s.W - first, 0, L)));
          } else {
            const T* src = padded + sx * s.dil_w + q0 * s.stride_w;
            for (int l = 0; l < L; ++l) xv[b][l] = src[(b * L + l) * s.stride_w];
          }
        }
        for (int b = 0; b < NB; ++b)
          for (int k = 0; k < K; ++k) acc[k][b] += wk[k] * xv[b];
      }
    }
  for (int k = 0; k < K; ++k)
    for (int b = 0; b < NB; ++b) {
      const int64_t q = q0 + b * L, n = std::min<int64_t>(L, s.Q - q);
      if (n == L) Vec<T>::store(out[k] + q, ep.apply(acc[k][b]));
      else if (n > 0) Vec<T>::store_first(out[k] + q, ep.apply(acc[k][b]), static_cast<int>(n));
    }
}

template <typename T, int K, bool Unit>
void blocks(int64_t nb, const ConvShape& s, const T* x_n, const T* w_g, const T* b_g, int64_t oh, int64_t q0,
            T* padded, T* const* out, const Epilogue<T>& ep) {
  switch (nb) {
    case 1: return output_block<T, K, 1, Unit>(s, x_n, w_g, b_g, oh, q0, padded, out, ep);
    case 2: return output_block<T, K, 2, Unit>(s, x_n, w_g, b_g, oh, q0, padded, out, ep);
    case 3: return output_block<T, K, 3, Unit>(s, x_n, w_g, b_g, oh, q0, padded, out, ep);
    default: return output_block<T, K, 4, Unit>(s, x_n, w_g, b_g, oh, q0, padded, out, ep);
  }
}

template <typename T, int K>
void run(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, const Epilogue<T>& ep) {
  constexpr int L = Vec<T>::lanes;
  const int64_t Cg = s.c_per_group(), q_vec = (s.Q + L - 1) / L * L;
  // A strided row is copied after pad_w zeros into a padded row that covers the lanes past Q the
  // whole-vector loop reads; what lies outside the input row stays zero.
  const int64_t padded_len = std::max((q_vec - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1, s.pad_w + s.W);
  const int64_t rows = s.N * s.groups * s.P;
#pragma omp parallel num_threads(threads_for(rows * K * Cg * s.R * s.S * s.Q))
  {
    std::vector<T> padded(s.stride_w == 1 ? 0 : static_cast<size_t>(padded_len), T(0));  // strided rows only
#pragma omp for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t n = t / (s.groups * s.P), g = t / s.P % s.groups, oh = t % s.P;
      T* out[K];
      for (int k = 0; k < K; ++k) out[k] = y + ((n * s.K + g * K + k) * s.P + oh) * s.Q;
      const T* x_n = x + (n * s.C + g * Cg) * s.H * s.W;
      const T* w_g = w + g * K * Cg * s.R * s.S;
      const T* b_g = bias ? bias + g * K : nullptr;
      // Blocks of up to 4 vectors (4K + K + 1 registers at K = 4).
      for (int64_t q0 = 0; q0 < q_vec; q0 += 4 * L) {
        const int64_t nb = std::min<int64_t>(4, (q_vec - q0) / L);
        if (s.stride_w == 1) blocks<T, K, true>(nb, s, x_n, w_g, b_g, oh, q0, padded.data(), out, ep);
        else blocks<T, K, false>(nb, s, x_n, w_g, b_g, oh, q0, padded.data(), out, ep);
      }
    }
  }
}

}  // namespace

template <typename T>
void conv2d_forward_few_outputs(const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                                const Epilogue<T>& ep) {
  switch (s.k_per_group()) {
    case 1: return run<T, 1>(s, x, w, bias, y, ep);
    case 2: return run<T, 2>(s, x, w, bias, y, ep);
    case 3: return run<T, 3>(s, x, w, bias, y, ep);
    default: return run<T, 4>(s, x, w, bias, y, ep);
  }
}

template void conv2d_forward_few_outputs<float>(const ConvShape&, const float*, const float*, const float*, float*,
                                                const Epilogue<float>&);
template void conv2d_forward_few_outputs<double>(const ConvShape&, const double*, const double*, const double*,
                                                 double*, const Epilogue<double>&);

}  // namespace medkern::cpu

// Winograd minimal filtering for the forward convolution (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016). An m x m block of outputs (a tile) reads an a x a input patch d,
// a = m + r - 1; with the r x r kernel g,
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A,
// and the elementwise product summed over input channels becomes, for each of the a*a positions e of the
// transformed tile, one GEMM: M_e (K x tiles) = U_e (K x C) * V_e (C x tiles). The transforms are a few
// additions per value; the GEMMs do the arithmetic, a*a multiplications per tile and channel pair where
// direct convolution needs m*m*r*r.
//
// Three schemes:
//   F(2x2, 3x3) for 3x3 stride-1 layers: 16 multiplications where direct convolution needs 36.
//   F(4x4, 4x4) for 7x7 and 8x8 stride-2 layers. Split by the stride phase (a, b) of its rows and columns,
//     the input is 4C planes x_ab[i][j] = x[2i + a][2j + b] and the kernel 4C sub-kernels
//     w_ab[u][v] = w[2u + a][2v + b] of at most 4x4 taps (zero past the kernel's edge), so the layer is a
//     stride-1 4x4 convolution over 4C planes: 49 multiplications per 4x4 tile and plane, 12.25C per
//     output where direct convolution needs 49C (7x7). The planes are never materialised: the input
//     transform reads x at the layer's stride. (F(3x3, 4x4), 36 multiplications per 3x3 tile, ran the
//     stem 8% slower: 16C per output, and 3% of its tiles hang over the 112-wide map.)
//   F(2x2, 2x2) for 4x4 stride-2 layers with many channels, on the same phase planes: 2x2 sub-kernels,
//     9 multiplications per 2x2 tile and plane, 9C per output where direct convolution needs 16C.
//
// The GEMM columns are the tiles of the whole batch, image by image and row by row, so a small map's
// tiles share column panels with the next image's. Work is split into blocks of whole column panels.
// For each block the input transform writes V_e straight into the packed-B panel layout of gemm.h;
// then, for each column panel of tiles and each row panel of output channels, the a*a micro-kernel
// products land in a small buffer (a*a x MR x NR) and the output transform, bias and activation run at
// once, so M is never materialised.
#include "conv2d_winograd.h"
#include "thread_scratch.h"
#include "threading.h"
#include "winograd_transforms.h"

#include <omp.h>

#include <cstring>
#include <stdexcept>

namespace medkern::cpu {
namespace {

// out = the lanes of M vectors interleaved, in[0][0] in[1][0] .. in[M-1][0] in[0][1] ..: M - 1 two-source
// shuffles per output vector, each adding one input's lanes to those already placed.
template <typename T, int M>
struct Interleave {
  using V = typename Vec<T>::type;
  using Mask = typename Vec<T>::mask_type;
  static constexpr int L = Vec<T>::lanes;
  Mask masks[M][M];  // masks[v][s]: the shuffle that adds input s (s >= 1) to output vector v

  Interleave() {
    for (int v = 0; v < M; ++v)
      for (int s = 1; s < M; ++s)
        for (int l = 0; l < L; ++l) {
          const int at = v * L + l, source = at % M, index = at / M;
          // first shuffle: inputs 0 and s; later ones: the vector so far and input s
          masks[v][s][l] = source == s ? L + index : (s == 1 && source == 0) ? index : l;
        }
  }
  void operator()(const V* in, V* out) const {
    for (int v = 0; v < M; ++v) {
      V acc = in[0];
      for (int s = 1; s < M; ++s) acc = __builtin_shuffle(acc, in[s], masks[v][s]);
      out[v] = acc;
    }
  }
};

// Reduction plane c of a layer with the scheme's stride: input channel c / stride^2 read at stride phase
// (c / stride % stride, c % stride).
template <class F>
struct Plane {
  int64_t channel, row_phase, col_phase;
  explicit Plane(int64_t c)
      : channel(c / (F::stride * F::stride)), row_phase(c / F::stride % F::stride), col_phase(c % F::stride) {}
};

// The reduction planes of a layer (its channels times the stride phases) and its tiles over the batch.
template <class F>
int64_t phase_planes(const ConvShape& s) { return s.C * F::stride * F::stride; }
template <class F>
int64_t batch_tiles(const ConvShape& s) { return s.N * ceil_div(s.P, F::m) * ceil_div(s.Q, F::m); }

// The a*a transformed operands (U_e, V_e) are written together: n elements apart plus 16, as a distance
// that is a multiple of 4 KiB would make their stores alias in L1 and the store buffer.
inline int64_t operand_stride(int64_t n) { return n + 16; }

// U = G g G^T for output channel k and every reduction plane c, stored straight into the a*a packed GEMM
// A operands (gemm.h's layout), `stride` apart; a k past the output channels (the last row panel's
// padding) stores zeros.
template <typename T, class F>
void transform_kernels(const ConvShape& s, const T* w, int64_t k, T* packed, int64_t stride) {
  constexpr int A = F::a, R = F::r, st = F::stride, MR = GemmTile<T>::MR;
  constexpr int64_t KC = GemmTile<T>::KC;
  const int64_t planes = phase_planes<F>(s), rows = ceil_div(s.K, MR) * MR;
  for (int64_t c = 0; c < planes; ++c) {
    const int64_t k0 = c / KC * KC, kc = std::min(KC, planes - k0);
    T* dst = packed + rows * k0 + (k / MR) * MR * kc + (c - k0) * MR + k % MR;
    if (k >= s.K) {
      for (int e = 0; e < A * A; ++e) dst[e * stride] = T(0);
      continue;
    }
    const Plane<F> p(c);
    const T* wk = w + (k * s.C + p.channel) * s.R * s.S;
    T g[R][R];  // g[v][u]: column v of the (sub-)kernel
    for (int u = 0; u < R; ++u)
      for (int v = 0; v < R; ++v) {
        const int64_t rr = st * u + p.row_phase, ss = st * v + p.col_phase;
        g[v][u] = rr < s.R && ss < s.S ? wk[rr * s.S + ss] : T(0);
      }
    T t[A][R];  // G g, row by row
    for (int v = 0; v < R; ++v) {
      T col[A];
      apply<T>(F::G, g[v], col);
      for (int i = 0; i < A; ++i) t[i][v] = col[i];
    }
    for (int i = 0; i < A; ++i) {
      T u[A];
      apply<T>(F::G, t[i], u);
      for (int j = 0; j < A; ++j) dst[(i * A + j) * stride] = u[j];
    }
  }
}

// How the batch's tiles (GEMM columns) are split into blocks: whole NR-wide column panels, at most
// kMaxPanels of them (a block's transformed input stays in L2). The threads take blocks in turn, and the
// block size is the one whose busiest thread has the fewest panels (the largest among equals).
struct Plan {
  static constexpr int64_t kMaxPanels = 4;
  int64_t tiles_h, tiles_w, tiles, block_cols, blocks, n_panels;

  template <typename T, class F>
  static Plan make(const ConvShape& s, int threads) {
    constexpr int64_t NR = GemmTile<T>::NR;
    Plan p{};
    p.tiles_h = ceil_div(s.P, F::m);
    p.tiles_w = ceil_div(s.Q, F::m);
    p.tiles = batch_tiles<F>(s);
    const int64_t panels = ceil_div(p.tiles, NR);
    int64_t best = -1;
    for (int64_t size = 1; size <= std::min(kMaxPanels, panels); ++size) {
      const int64_t blocks = ceil_div(panels, size), last = panels - (blocks - 1) * size;
      // the busiest thread: the first one, or the one holding the last (short) block
      const bool alone = threads == 1 || blocks % threads == 1;  // it alone holds the most blocks
      const int64_t first = ceil_div(blocks, threads) * size - (alone ? size - last : 0);
      const int64_t busiest = std::max(first, blocks / threads * size);
      if (best < 0 || busiest <= best) { best = busiest; p.n_panels = size; }
    }
    p.block_cols = p.n_panels * NR;
    p.blocks = ceil_div(p.tiles, p.block_cols);
    return p;
  }

  // f(n, tr, tc, len, offset) for each run of `count` columns from column `first` that lies in one tile row
  // (image n, tile row tr, tiles tc .. tc + len - 1), `offset` columns after `first`.
  template <class Fn>
  void for_each_run(int64_t first, int64_t count, Fn&& f) const {
    for (int64_t done = 0; done < count;) {
      const int64_t col = first + done, per_image = tiles_h * tiles_w, rem = col % per_image;
      const int64_t tc = rem % tiles_w, len = std::min(tiles_w - tc, count - done);
      f(col / per_image, rem / tiles_w, tc, len, done);
      done += len;
    }
  }
};

template <typename T, class F>
class Worker {
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  static constexpr int L = Vec<T>::lanes, M = F::m, A = F::a, E = A * A;
  static constexpr int64_t kPhaseLen = (A - 1) / M;  // phase entries a tile row reads past its last tile
  static constexpr int64_t kTileCols = G::NR + L;  // a panel's tiles, and the vector a run's last load reads past

 public:
  Worker(const ConvShape& s, const Plan& plan, const T* x, const T* u_packed, const T* bias, T* y,
         const Epilogue<T>& ep)
      : s_(s), plan_(plan), x_(x), u_(u_packed), bias_(bias), y_(y), ep_(ep), planes_(phase_planes<F>(s)),
        half_(ceil_div(plan.tiles_w + kPhaseLen + L, 16) * 16),  // + a vector: see transform_input
        v_stride_(operand_stride(plan.n_panels * G::NR * planes_)),
        v_(thread_scratch<T>(0, E * v_stride_)),
        m_(thread_scratch<T>(1, E * G::MR * G::NR)),
        rows_(thread_scratch<T>(2, A * M * half_)) {}

  void run_block(int64_t block) {
    const int64_t first = block * plan_.block_cols, cols = std::min(plan_.block_cols, plan_.tiles - first);
    for (int64_t c = 0; c < planes_; ++c)
      plan_.for_each_run(first, cols, [&](int64_t n, int64_t tr, int64_t tc, int64_t len, int64_t col) {
        transform_input(n, c, tr, tc, len, col);
      });
    const int64_t m_panels = ceil_div(s_.K, G::MR);
    for (int64_t jp = 0; jp < ceil_div(cols, G::NR); ++jp)
      for (int64_t ip = 0; ip < m_panels; ++ip) {
        multiply(ip, jp, m_panels);
        transform_output(first, ip, jp, cols);
      }
  }

 private:
  // Offset of element (c, col) of one V_e in gemm.h's packed-B layout (reduction blocks of KC rows,
  // NR-column panels stored k-major).
  int64_t v_offset(int64_t c, int64_t col) const {
    const int64_t k0 = c / G::KC * G::KC, kc = std::min<int64_t>(G::KC, planes_ - k0);
    return plan_.n_panels * G::NR * k0 + (col / G::NR) * G::NR * kc + (c - k0) * G::NR + col % G::NR;
  }

  // Row i of reduction plane c split into its M column phases, ph[q][t] = plane[i][M t + q] for t < len,
  // zero where the plane reads padding.
  void load_row(int64_t n, int64_t c, int64_t i, T* const* ph, int64_t len) {
    constexpr int64_t st = F::stride, step = st * M;
    const Plane<F> p(c);
    const int64_t ih = st * i + p.row_phase - s_.pad_h;
    if (ih < 0 || ih >= s_.H) {
      for (int q = 0; q < M; ++q) std::fill(ph[q], ph[q] + len, T(0));
      return;
    }
    const T* src = x_ + ((n * s_.C + p.channel) * s_.H + ih) * s_.W;
    if constexpr (step == 2) return split_even_odd(src, ph[0], ph[1], len);
    for (int q = 0; q < M; ++q) {
      const int64_t first = st * q + p.col_phase - s_.pad_w;  // the input column of t = 0
      const int64_t lo = std::min(len, first >= 0 ? 0 : ceil_div(-first, step));
      const int64_t hi = std::max(lo, std::min(len, first < s_.W ? ceil_div(s_.W - first, step) : 0));
      T* out = ph[q];
      std::fill(out, out + lo, T(0));
      for (int64_t t = lo; t < hi; ++t) out[t] = src[first + step * t];
      std::fill(out + hi, out + len, T(0));
    }
  }

  // Even and odd columns of a stride-1 row, L pairs at a time from two vectors split by shuffles.
  void split_even_odd(const T* src, T* ev, T* od, int64_t len) {
    auto split_scalar = [&](int64_t j) {
      const int64_t iw = 2 * j - s_.pad_w;
      ev[j] = iw >= 0 && iw < s_.W ? src[iw] : T(0);
      od[j] = iw + 1 >= 0 && iw + 1 < s_.W ? src[iw + 1] : T(0);
    };
    const int64_t j_lo = std::min(len, ceil_div(s_.pad_w, 2));
    int64_t j = 0;
    for (; j < j_lo; ++j) split_scalar(j);
    // Whole vectors, then masked loads whose lanes past the row's end read as the zero padding (the
    // pairs past `len` land in the slack of rows_).
    for (; j < len; j += L) {
      const int64_t iw = 2 * j - s_.pad_w, left = s_.W - iw;
      const V a = left >= L ? Vec<T>::load(src + iw) : Vec<T>::load_first(src + iw, int(std::max<int64_t>(left, 0)));
      const V b = left >= 2 * L ? Vec<T>::load(src + iw + L)
                                : Vec<T>::load_first(src + iw + L, int(std::clamp<int64_t>(left - L, 0, L)));
      Vec<T>::store(ev + j, __builtin_shuffle(a, b, Vec<T>::even_lanes()));
      Vec<T>::store(od + j, __builtin_shuffle(a, b, Vec<T>::odd_lanes()));
    }
  }

  // V_e[c, col0 + t] = (B^T d B)_e for tiles tc0 + t, t < count, of tile row tr of image n and plane c.
  // Tile t reads plane columns M t .. M t + A - 1, which are ph[jj % M][t + jj / M] for jj < A once each
  // row is split into its M column phases; both passes are then loops over tiles, a vector at a time.
  void transform_input(int64_t n, int64_t c, int64_t tr, int64_t tc0, int64_t count, int64_t col0) {
    const int64_t len = plan_.tiles_w + kPhaseLen;
    T* ph[A][M];
    for (int rr = 0; rr < A; ++rr) {
      for (int q = 0; q < M; ++q) ph[rr][q] = rows_ + (rr * M + q) * half_;
      load_row(n, c, M * tr + rr, ph[rr], len);
    }
    // Vertical pass, in place, over the run's phase entries: rows become B^T d (the vectors past `len`
    // read and write rows_' slack).
    for (int q = 0; q < M; ++q)
      for (int64_t j = tc0; j < tc0 + count + kPhaseLen; j += L) {
        V d[A], o[A];
        for (int rr = 0; rr < A; ++rr) d[rr] = Vec<T>::load(ph[rr][q] + j);
        apply<T>(F::BT, d, o);
        for (int rr = 0; rr < A; ++rr) Vec<T>::store(ph[rr][q] + j, o[rr]);
      }
    // Horizontal pass, written straight into the panels: one run per panel the tile row touches, whole
    // vectors with a masked last one.
    for (int64_t j = 0; j < count;) {
      const int64_t col = col0 + j, run = std::min<int64_t>(count - j, G::NR - col % G::NR);
      T* v = v_ + v_offset(c, col);
      for (int rr = 0; rr < A; ++rr) {
        T* vr = v + rr * A * v_stride_;
        for (int64_t t = 0; t < run; t += L) {
          V in[A], out[A];
          for (int jj = 0; jj < A; ++jj) in[jj] = Vec<T>::load(ph[rr][jj % M] + tc0 + j + t + jj / M);
          apply<T>(F::BT, in, out);
          const int count = static_cast<int>(std::min<int64_t>(L, run - t));
          for (int e = 0; e < A; ++e) {
            if (count == L) Vec<T>::store(vr + e * v_stride_ + t, out[e]);
            else Vec<T>::store_first(vr + e * v_stride_ + t, out[e], count);
          }
        }
      }
      j += run;
    }
  }

  // m_[e] (MR x NR) = U_e[row panel ip] * V_e[column panel jp], summed over the reduction blocks.
  void multiply(int64_t ip, int64_t jp, int64_t m_panels) {
    const int64_t u_stride = operand_stride(packed_a_size<T>(s_.K, planes_));
    for (int e = 0; e < E; ++e) {
      const T* u = u_ + e * u_stride;
      const T* v = v_ + e * v_stride_;
      for (int64_t k0 = 0; k0 < planes_; k0 += G::KC) {
        const int64_t kc = std::min<int64_t>(G::KC, planes_ - k0);
        micro_kernel<T>(kc, u + m_panels * G::MR * k0 + ip * G::MR * kc,
                        v + plan_.n_panels * G::NR * k0 + jp * G::NR * kc, m_ + e * G::MR * G::NR, G::NR,
                        G::MR, G::NR, nullptr, k0 > 0);
      }
    }
  }

  // y = A^T M A + bias, activated: computed for a panel of NR tiles at once (vectorised) into y_tiles,
  // then written out row by row of each tile row the panel covers; tiles hanging over the output's edge
  // write only in-range outputs. `first`: the block's first column.
  void transform_output(int64_t first, int64_t ip, int64_t jp, int64_t cols) {
    const int64_t count = std::min<int64_t>(G::NR, cols - jp * G::NR);
    constexpr int64_t stride_e = G::MR * G::NR;  // distance between the products of two positions e
    alignas(64) T y_tiles[M * M][kTileCols];
    for (int i = 0; i < G::MR; ++i) {
      const int64_t k = ip * G::MR + i;
      if (k >= s_.K) break;
      const V b = Vec<T>::broadcast(bias_ ? bias_[k] : T(0));
      const T* m = m_ + i * G::NR;
      for (int j = 0; j < G::NR; j += L) {
        V h[M][A];  // h[c][r] = (M A)[r][c]
        for (int r = 0; r < A; ++r) {
          V row[A], out[M];
          for (int e = 0; e < A; ++e) row[e] = Vec<T>::load(m + (r * A + e) * stride_e + j);
          apply<T>(F::AT, row, out);
          for (int c = 0; c < M; ++c) h[c][r] = out[c];
        }
        for (int c = 0; c < M; ++c) {
          V out[M];
          apply<T>(F::AT, h[c], out);
          for (int r = 0; r < M; ++r) Vec<T>::store(&y_tiles[r * M + c][j], ep_.apply(out[r] + b));
        }
      }
      plan_.for_each_run(first + jp * G::NR, count, [&](int64_t n, int64_t tr, int64_t tc, int64_t len, int64_t j) {
        write_tile_rows(y_tiles, j, len, n, k, tr, tc);
      });
    }
  }

  // Output rows M tr .. M tr + M - 1 of channel k from tiles tc .. tc + run - 1, whose values are
  // y_tiles[r * M + c][j ..]: row r interleaves the M columns of each tile, L tiles (M vectors) at a time.
  void write_tile_rows(const T (*y_tiles)[kTileCols], int64_t j, int64_t run, int64_t n, int64_t k, int64_t tr,
                       int64_t tc) {
    static const Interleave<T, M> interleave;
    const int64_t rows = std::min<int64_t>(M, s_.P - M * tr), width = std::min(M * run, s_.Q - M * tc);
    for (int64_t r = 0; r < rows; ++r) {
      T* dst = y_ + ((n * s_.K + k) * s_.P + M * tr + r) * s_.Q + M * tc;
      for (int64_t t = 0; t < run; t += L) {
        V in[M], out[M];
        for (int c = 0; c < M; ++c) in[c] = Vec<T>::load(&y_tiles[r * M + c][j + t]);
        interleave(in, out);
        for (int v = 0; v < M; ++v) {
          const int64_t at = M * t + v * L, left = width - at;
          if (left >= L) Vec<T>::store(dst + at, out[v]);
          else if (left > 0) Vec<T>::store_first(dst + at, out[v], int(left));
        }
      }
    }
  }

  const ConvShape& s_;
  const Plan& plan_;
  const T* x_;
  const T* u_;
  const T* bias_;
  T* y_;
  const Epilogue<T>& ep_;
  const int64_t planes_, half_, v_stride_;
  T* v_;
  T* m_;
  T* rows_;
};

template <typename T, class F>
void forward(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, const Epilogue<T>& ep) {
  constexpr int E = F::a * F::a;
  const int64_t planes = phase_planes<F>(s);
  const int64_t multiply_adds = batch_tiles<F>(s) * s.K * planes * E;
  const int threads = threads_for(multiply_adds);
  const Plan plan = Plan::make<T, F>(s, threads);
  const int64_t u_stride = operand_stride(packed_a_size<T>(s.K, planes));
  // The calling thread's buffer, kept between calls: allocating it each time cost a visible part of a
  // batch-1 call. Every element is written before it is read.
  static thread_local Buffer<T> u_packed;
  static thread_local int64_t packed_size = 0;
  if (packed_size < E * u_stride) u_packed = alloc_buffer<T>(packed_size = E * u_stride);
  T* const packed = u_packed.get();
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t k = 0; k < ceil_div(s.K, GemmTile<T>::MR) * GemmTile<T>::MR; ++k)
      transform_kernels<T, F>(s, w, k, packed, u_stride);
    Worker<T, F> worker(s, plan, x, packed, bias, y, ep);
#pragma omp for schedule(static, 1)
    for (int64_t b = 0; b < plan.blocks; ++b) worker.run_block(b);
  }
}

}  // namespace

template <typename T>
void conv2d_forward_winograd(ConvPath scheme, const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                             const Epilogue<T>& ep) {
  switch (scheme) {
    case ConvPath::winograd_f2x3: return forward<T, F2x3>(s, x, w, bias, y, ep);
    case ConvPath::winograd_f4x3: return forward<T, F4x3>(s, x, w, bias, y, ep);
    case ConvPath::winograd_f2x2_phases: return forward<T, F2x2>(s, x, w, bias, y, ep);
    case ConvPath::winograd_f4x4_phases: return forward<T, F4x4>(s, x, w, bias, y, ep);
    default: throw std::logic_error("conv2d_forward_winograd: not a Winograd path");
  }
}

template void conv2d_forward_winograd<float>(ConvPath, const ConvShape&, const float*, const float*, const float*,
                                             float*, const Epilogue<float>&);
template void conv2d_forward_winograd<double>(ConvPath, const ConvShape&, const double*, const double*,
                                              const double*, double*, const Epilogue<double>&);

}  // namespace medkern::cpu

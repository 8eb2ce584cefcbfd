// Winograd F(2x2, 3x3) forward convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016). Each 2x2 output tile reads a 4x4 input patch d; with the 3x3 kernel g,
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A,
// and the elementwise product summed over input channels becomes, for each of the 16 positions e of the
// 4x4 transformed tile, one GEMM: M_e (K x tiles) = U_e (K x C) * V_e (C x tiles). That is 16 multiplies
// per tile and channel pair where direct convolution needs 36, so the arithmetic drops 2.25x; the
// transforms are additions only and cost little next to the GEMMs.
//
// Work is split into blocks of whole tile rows ("bands") of one image. For each block the input transform
// writes V_e straight into the packed-B panel layout of gemm.h; then, for each column panel of tiles and
// each row panel of output channels, the 16 micro-kernel products land in a small buffer (16 x MR x NR,
// in L1) and the output transform, bias and activation run at once, so M is never materialised.
#include "conv2d_winograd.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace medkern::cpu {
namespace {

constexpr int kTaps = 16;  // positions of a 4x4 transformed tile

// U = G g G^T for `count` consecutive 3x3 kernels g = w[q * 9 ..], G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],
// [0,0,1]]; the 16 positions of kernel q go to u[q * 16 + e], contiguous (16 output streams a multiple of
// 4 KiB apart, one per position, thrashed L1 and made this transform a visible part of a batch-1 call).
template <typename T>
void transform_kernels(const T* __restrict w, int64_t count, T* __restrict u) {
  const T half = T(0.5);
  for (int64_t q = 0; q < count; ++q) {
    const T* g = w + q * 9;
    T* uq = u + q * kTaps;
    T t[4][3];
    for (int j = 0; j < 3; ++j) {
      const T g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
      t[0][j] = g0;
      t[1][j] = half * (g0 + g1 + g2);
      t[2][j] = half * (g0 - g1 + g2);
      t[3][j] = g2;
    }
    for (int i = 0; i < 4; ++i) {
      const T a0 = t[i][0], a1 = t[i][1], a2 = t[i][2];
      uq[i * 4 + 0] = a0;
      uq[i * 4 + 1] = half * (a0 + a1 + a2);
      uq[i * 4 + 2] = half * (a0 - a1 + a2);
      uq[i * 4 + 3] = a2;
    }
  }
}

// Per-thread scratch, kept between calls (OpenMP reuses its threads): a batch-1 call would otherwise
// spend a noticeable part of its time allocating. Panel columns past a block's tiles hold whatever an
// earlier block left there; GEMM columns are independent, so those values only reach discarded outputs.
template <typename T>
T* thread_scratch(int slot, int64_t size) {
  static thread_local Buffer<T> buffers[3];
  static thread_local int64_t sizes[3] = {0, 0, 0};
  if (sizes[slot] < size) {
    buffers[slot] = alloc_buffer<T>(size);
    std::fill(buffers[slot].get(), buffers[slot].get() + size, T(0));
    sizes[slot] = size;
  }
  return buffers[slot].get();
}

// How tiles are grouped: `bands` tile rows of one image per block, chosen so that a block's tile count
// wastes little of the last NR-wide column panel, and is not so large that its transformed input leaves
// the caches.
struct Plan {
  int64_t tiles_h, tiles_w, bands, blocks_per_image, max_cols, n_panels;

  template <typename T>
  static Plan make(const Conv2dShape& s) {
    constexpr int64_t NR = GemmTile<T>::NR;
    Plan p{};
    p.tiles_h = (s.P + 1) / 2;
    p.tiles_w = (s.Q + 1) / 2;
    p.bands = 1;
    double best = 2.0;
    for (int64_t b = 1; b <= p.tiles_h && b * p.tiles_w <= std::max<int64_t>(4 * NR, p.tiles_w); ++b) {
      const int64_t cols = b * p.tiles_w, padded = ceil_div(cols, NR) * NR;
      const double waste = double(padded - cols) / double(padded);
      if (waste <= best + 1e-9) { best = waste; p.bands = b; }
    }
    p.blocks_per_image = ceil_div(p.tiles_h, p.bands);
    p.max_cols = p.bands * p.tiles_w;
    p.n_panels = ceil_div(p.max_cols, NR);
    return p;
  }
};

template <typename T>
class Worker {
 public:
  Worker(const Conv2dShape& s, const Plan& plan, const T* x, const T* u_packed, const T* bias, T* y,
         const Epilogue<T>& ep)
      : s_(s), plan_(plan), x_(x), u_(u_packed), bias_(bias), y_(y), ep_(ep),
        half_(ceil_div(plan.tiles_w + 1 + Vec<T>::lanes, 16) * 16),  // + a vector: see transform_input
        // +16: the 16 V_e are written together, and a stride that is a multiple of 4 KiB would make
        // their stores alias in the store buffer
        v_stride_(plan.n_panels * G::NR * s.C + 16),
        v_(thread_scratch<T>(0, kTaps * v_stride_)),
        m_(thread_scratch<T>(1, kTaps * G::MR * G::NR)),
        rows_(thread_scratch<T>(2, 8 * half_)) {}

  void run_block(int64_t n, int64_t block) {
    const int64_t tr0 = block * plan_.bands;
    const int64_t bands = std::min(plan_.bands, plan_.tiles_h - tr0);
    const int64_t cols = bands * plan_.tiles_w;
    for (int64_t c = 0; c < s_.C; ++c)
      for (int64_t b = 0; b < bands; ++b) transform_input(n, c, tr0 + b, b * plan_.tiles_w);
    const int64_t m_panels = ceil_div(s_.K, G::MR);
    for (int64_t jp = 0; jp < ceil_div(cols, G::NR); ++jp)
      for (int64_t ip = 0; ip < m_panels; ++ip) {
        multiply(ip, jp, m_panels);
        transform_output(n, tr0, ip, jp, cols);
      }
  }

 private:
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  static constexpr int L = Vec<T>::lanes;

  // Offset of element (c, col) of one V_e in gemm.h's packed-B layout (reduction blocks of KC rows,
  // NR-column panels stored k-major).
  int64_t v_offset(int64_t c, int64_t col) const {
    const int64_t k0 = c / G::KC * G::KC, kc = std::min<int64_t>(G::KC, s_.C - k0);
    return plan_.n_panels * G::NR * k0 + (col / G::NR) * G::NR * kc + (c - k0) * G::NR + col % G::NR;
  }

  // V_e[c, col0 + tc] = (B^T d B)_e for the patches of tile row tr,
  // B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]. Tile tc reads padded columns 2tc .. 2tc+3, so the
  // rows are split into even and odd columns (ev[tc] = col 2tc, od[tc] = col 2tc+1); then both passes are
  // plain loops over tiles, which the compiler vectorises.
  void transform_input(int64_t n, int64_t c, int64_t tr, int64_t col0) {
    const int64_t tw = plan_.tiles_w, len = tw + 1;
    T* ev[4];
    T* od[4];
    for (int r = 0; r < 4; ++r) {
      ev[r] = rows_ + (2 * r) * half_;
      od[r] = rows_ + (2 * r + 1) * half_;
      const int64_t ih = 2 * tr - s_.pad_h + r;
      if (ih < 0 || ih >= s_.H) {
        std::fill(ev[r], ev[r] + len, T(0));
        std::fill(od[r], od[r] + len, T(0));
        continue;
      }
      const T* src = x_ + ((n * s_.C + c) * s_.H + ih) * s_.W;
      auto split_scalar = [&](int64_t j) {
        const int64_t iw = 2 * j - s_.pad_w;
        ev[r][j] = iw >= 0 && iw < s_.W ? src[iw] : T(0);
        od[r][j] = iw + 1 >= 0 && iw + 1 < s_.W ? src[iw + 1] : T(0);
      };
      // Interior: L pairs at a time from two vectors, split by even/odd shuffles.
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
        Vec<T>::store(ev[r] + j, __builtin_shuffle(a, b, Vec<T>::even_lanes()));
        Vec<T>::store(od[r] + j, __builtin_shuffle(a, b, Vec<T>::odd_lanes()));
      }
    }
    // Vertical pass, in place: rows become B^T d.
    for (T** h : {ev, od})
      for (int64_t j = 0; j < len; ++j) {
        const T d0 = h[0][j], d1 = h[1][j], d2 = h[2][j], d3 = h[3][j];
        h[0][j] = d0 - d2;
        h[1][j] = d1 + d2;
        h[2][j] = d2 - d1;
        h[3][j] = d1 - d3;
      }
    // Horizontal pass, written straight into the panels: one run per panel the tile row touches, whole
    // vectors with a masked last one (rows_ is long enough for the reads past the row's end).
    for (int64_t j = 0; j < tw;) {
      const int64_t col = col0 + j, run = std::min<int64_t>(tw - j, G::NR - col % G::NR);
      T* v = v_ + v_offset(c, col);
      for (int i = 0; i < 4; ++i) {
        // columns 2tc .. 2tc+3 of tile tc are e[tc], o[tc], e[tc+1], o[tc+1]
        const T* e = ev[i] + j;
        const T* o = od[i] + j;
        T* v0 = v + (i * 4) * v_stride_;
        for (int64_t t = 0; t < run; t += L) {
          const V e0 = Vec<T>::load(e + t), e1 = Vec<T>::load(e + t + 1);
          const V o0 = Vec<T>::load(o + t), o1 = Vec<T>::load(o + t + 1);
          const V out[4] = {e0 - e1, o0 + e1, e1 - o0, o0 - o1};
          const int n = static_cast<int>(std::min<int64_t>(L, run - t));
          for (int q = 0; q < 4; ++q) {
            if (n == L) Vec<T>::store(v0 + q * v_stride_ + t, out[q]);
            else Vec<T>::store_first(v0 + q * v_stride_ + t, out[q], n);
          }
        }
      }
      j += run;
    }
  }

  // m_[e] (MR x NR) = U_e[row panel ip] * V_e[column panel jp], summed over the reduction blocks.
  void multiply(int64_t ip, int64_t jp, int64_t m_panels) {
    const int64_t u_stride = m_panels * G::MR * s_.C;
    for (int e = 0; e < kTaps; ++e) {
      const T* u = u_ + e * u_stride;
      const T* v = v_ + e * v_stride_;
      for (int64_t k0 = 0; k0 < s_.C; k0 += G::KC) {
        const int64_t kc = std::min<int64_t>(G::KC, s_.C - k0);
        micro_kernel<T>(kc, u + m_panels * G::MR * k0 + ip * G::MR * kc,
                        v + plan_.n_panels * G::NR * k0 + jp * G::NR * kc, m_ + e * G::MR * G::NR, G::NR,
                        G::MR, G::NR, nullptr, k0 > 0);
      }
    }
  }

  // y = A^T M A + bias, activated, A^T = [[1,1,1,0],[0,1,-1,-1]]: computed for a row of NR tiles at once
  // (vectorised), then scattered; tiles hanging over an odd output edge write only in-range outputs.
  void transform_output(int64_t n, int64_t tr0, int64_t ip, int64_t jp, int64_t cols) {
    const int64_t P = s_.P, Q = s_.Q, count = std::min<int64_t>(G::NR, cols - jp * G::NR);
    alignas(64) T y[4][G::NR];
    for (int i = 0; i < G::MR; ++i) {
      const int64_t k = ip * G::MR + i;
      if (k >= s_.K) break;
      const V b = Vec<T>::broadcast(bias_ ? bias_[k] : T(0));
      const T* m = m_ + i * G::NR;
      constexpr int64_t E = G::MR * G::NR;  // distance between the products of two positions e
      for (int j = 0; j < G::NR; j += L) {
        V s0[4], s1[4];
        for (int q = 0; q < 4; ++q) {
          const V m0 = Vec<T>::load(m + q * E + j), m1 = Vec<T>::load(m + (4 + q) * E + j);
          const V m2 = Vec<T>::load(m + (8 + q) * E + j), m3 = Vec<T>::load(m + (12 + q) * E + j);
          s0[q] = m0 + m1 + m2;
          s1[q] = m1 - m2 - m3;
        }
        Vec<T>::store(&y[0][j], ep_.apply(s0[0] + s0[1] + s0[2] + b));
        Vec<T>::store(&y[1][j], ep_.apply(s0[1] - s0[2] - s0[3] + b));
        Vec<T>::store(&y[2][j], ep_.apply(s1[0] + s1[1] + s1[2] + b));
        Vec<T>::store(&y[3][j], ep_.apply(s1[1] - s1[2] - s1[3] + b));
      }
      T* yk = y_ + (n * s_.K + k) * P * Q;
      for (int64_t j = 0; j < count; ++j) {
        const int64_t col = jp * G::NR + j;
        const int64_t oh = 2 * (tr0 + col / plan_.tiles_w), ow = 2 * (col % plan_.tiles_w);
        T* row0 = yk + oh * Q + ow;
        const bool right = ow + 1 < Q, below = oh + 1 < P;
        row0[0] = y[0][j];
        if (right) row0[1] = y[1][j];
        if (below) {
          row0[Q] = y[2][j];
          if (right) row0[Q + 1] = y[3][j];
        }
      }
    }
  }

  const Conv2dShape& s_;
  const Plan& plan_;
  const T* x_;
  const T* u_;
  const T* bias_;
  T* y_;
  const Epilogue<T>& ep_;
  const int64_t half_, v_stride_;
  T* v_;
  T* m_;
  T* rows_;
};

}  // namespace

bool winograd_applies(const Conv2dShape& s) {
  static const bool enabled = [] {
    const char* v = std::getenv("MEDKERN_CONV_WINOGRAD");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  // Below ~16 channels on either side the 16 GEMMs are too thin for the micro-kernel and the transforms
  // dominate; the direct path is then as fast. Tiles do not span images, so a map under 12x12 fills too
  // little of each column panel (7x7: 16 tiles in a 48-wide panel), where the direct path's columns run
  // across the batch (measured at 32x128x7x7 -> 128: 2.9 ms direct, 5.0 ms Winograd; at batch 1, 0.36 ms
  // direct, 0.43 ms Winograd).
  return enabled && s.R == 3 && s.S == 3 && s.stride_h == 1 && s.stride_w == 1 && s.dil_h == 1 && s.dil_w == 1 &&
         s.groups == 1 && s.C >= 16 && s.K >= 16 && s.P * s.Q >= 144;
}

template <typename T>
void conv2d_forward_winograd(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y,
                             const Epilogue<T>& ep) {
  const Plan plan = Plan::make<T>(s);
  const int64_t u_stride = packed_a_size<T>(s.K, s.C);
  // The calling thread's buffers, kept between calls: allocating (and zeroing) them each time cost a
  // visible part of a batch-1 call. Every element is written before it is read.
  static thread_local Buffer<T> u, u_packed;
  static thread_local int64_t u_size = 0, packed_size = 0;
  if (u_size < kTaps * s.K * s.C) u = alloc_buffer<T>(u_size = kTaps * s.K * s.C);
  if (packed_size < kTaps * u_stride) u_packed = alloc_buffer<T>(packed_size = kTaps * u_stride);
  const int64_t tasks = s.N * plan.blocks_per_image;
  const int64_t multiply_adds = s.N * plan.tiles_h * plan.tiles_w * s.K * s.C * kTaps;
  T* const u_all = u.get();
  T* const packed = u_packed.get();
#pragma omp parallel if (multiply_adds >= (int64_t(1) << 18))
  {
    // U_e (K x C) for the 16 positions, then packed as GEMM A operands.
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.K; ++k) transform_kernels(w + k * s.C * 9, s.C, u_all + k * s.C * kTaps);
#pragma omp for schedule(static)
    for (int e = 0; e < kTaps; ++e) pack_a(u_all + e, s.C * kTaps, int64_t(kTaps), s.K, s.C, packed + e * u_stride);
    Worker<T> worker(s, plan, x, packed, bias, y, ep);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) worker.run_block(t / plan.blocks_per_image, t % plan.blocks_per_image);
  }
}

template void conv2d_forward_winograd<float>(const Conv2dShape&, const float*, const float*, const float*, float*,
                                             const Epilogue<float>&);
template void conv2d_forward_winograd<double>(const Conv2dShape&, const double*, const double*, const double*,
                                              double*, const Epilogue<double>&);

}  // namespace medkern::cpu

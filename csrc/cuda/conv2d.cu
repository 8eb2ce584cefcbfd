// conv2d on CUDA as implicit GEMM. One tiled main loop serves the three products of the family:
//   forward      y[g]  (Kg x N*P*Q) = W[g]  (Kg x Cg*R*S)   * col(x[g])   (Cg*R*S x N*P*Q)  + bias
//   grad-input   dx[g] (Cg x N*H*W) = W[g]' (Cg x Kg*R*S)   * dcol(dy[g]) (Kg*R*S x N*H*W)
//   grad-weight  dW[g] (Kg x Cg*R*S) = dy[g] (Kg x N*P*Q)   * col(x[g])'  (N*P*Q x Cg*R*S)
// No operand is ever materialised: each problem is an "Op" that maps a GEMM coordinate to the tensor
// element behind it, and the loaders call it while filling shared-memory tiles, reading 0 for taps in
// the padding (or, for grad-input, taps that feed no output position).
//
// When the output tiles alone are too few to fill the GPU (grad-weight nearly always, forward on small
// late-layer feature maps), the reduction is split into chunks whose partial tiles go to a workspace
// and a second kernel sums them in a fixed order. Nothing uses atomics, and the split depends only on
// the shape, so results are bit-identical from run to run and from GPU to GPU.
#include "conv2d.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace medkern::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16;   // block tile: GEMM rows x columns x reduction depth
constexpr int kThreads = 256;                 // 16 x 16 threads, each owning a kTM x kTN sub-tile
constexpr int kTM = kBM / 16, kTN = kBN / 16;
constexpr int kLoads = kBM * kBK / kThreads;  // elements of each operand tile loaded per thread
static_assert(kBM == kBN && kBM * kBK % kThreads == 0, "A and B tiles are loaded with the same count");
static_assert(kThreads % kBK == 0 && kThreads % kBN == 0, "loader layouts must tile the block evenly");
constexpr int kRowStep = kThreads / kBK;      // loader layout with threads running along the reduction
constexpr int kKStep = kThreads / kBN;        // loader layout with threads running along the columns
static_assert(kRowStep * kLoads == kBM && kKStep * kLoads == kBK, "");

constexpr int64_t kMax32 = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxBlocks = (int64_t(1) << 31) - 1;  // gridDim.x limit; kernels loop past it

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// `(unsigned)i < n` rejects negatives and values past the end with one comparison.
__device__ __forceinline__ bool in_range(int64_t i, int64_t n) { return uint64_t(i) < uint64_t(n); }

// Quotient and remainder of a non-negative index. The loaders divide on every element they fetch, and
// integer division is slow on GPUs (64-bit doubly so): when every dividend of a launch fits in 31 bits,
// the division becomes a multiply-high by a precomputed magic number (the method of PyTorch's
// IntDivider, valid for dividends and divisors below 2^31).
template <bool k32> struct Divider;

template <> struct Divider<true> {
  uint32_t d = 1, magic = 1, shift = 0;
  Divider() = default;
  explicit Divider(int64_t divisor) : d(uint32_t(divisor)) {
    while (shift < 32 && (uint64_t(1) << shift) < d) ++shift;
    magic = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << shift) - d)) / d + 1);
  }
  __device__ __forceinline__ void divmod(int64_t n, int64_t& q, int64_t& r) const {
    const uint32_t u = uint32_t(n);
    const uint32_t qu = (__umulhi(u, magic) + u) >> shift;  // u < 2^31 keeps the sum below 2^32
    q = qu;
    r = u - qu * d;
  }
};

template <> struct Divider<false> {
  int64_t d = 1;
  Divider() = default;
  explicit Divider(int64_t divisor) : d(divisor) {}
  __device__ __forceinline__ void divmod(int64_t n, int64_t& q, int64_t& r) const {
    q = n / d;
    r = n - q * d;
  }
};

// A flat index over (hi, mid, lo) split into its three coordinates: by_mid_lo divides by the size of
// (mid, lo), by_lo by the size of lo.
struct Index3 { int64_t hi, mid, lo; };

template <bool k32>
__device__ __forceinline__ Index3 split3(int64_t n, const Divider<k32>& by_mid_lo, const Divider<k32>& by_lo) {
  Index3 i;
  int64_t mid_lo;
  by_mid_lo.divmod(n, i.hi, mid_lo);
  by_lo.divmod(mid_lo, i.mid, i.lo);
  return i;
}

// conv_out_coord with the stride division done by `by_stride`.
template <bool k32>
__device__ __forceinline__ int64_t out_coord(int64_t i, int64_t r, int64_t stride, int64_t pad, int64_t dil,
                                             int64_t out_size, const Divider<k32>& by_stride) {
  if constexpr (!k32) {
    return conv_out_coord(i, r, stride, pad, dil, out_size);
  } else {
    const int64_t t = i + pad - r * dil;  // < 2^31 when non-negative: the launch checked H + pad
    if (t < 0) return -1;
    int64_t o, rem;
    by_stride.divmod(t, o, rem);
    return rem == 0 && o < out_size ? o : -1;
  }
}

// ---------------------------------------------------------------------------------------------------
// The three problems. Each Op describes one group's GEMM (M x Ncols, reduction length Kred) through:
//   row(g, m) / ka(kk) / a(row, ka)   element (m, kk) of A, the row part hoisted out of the k-loop
//   col(g, n) / kb(kk) / b(col, kb)   element (kk, n) of B, likewise
//   store(g, m, n, v)                 final value of output element (m, n)
// kBAlongK picks the B loader layout that keeps global reads coalesced: consecutive threads take
// consecutive columns (forward, grad-input: columns are spatial positions) or consecutive reduction
// indices (grad-weight: the reduction runs over spatial positions). A is always read along the
// reduction, which is contiguous in the weights and in dy.
// ---------------------------------------------------------------------------------------------------

template <typename T, bool k32>
struct ForwardOp {
  using Div = Divider<k32>;
  static constexpr bool kBAlongK = false;
  using Row = const T*;
  using KA = int64_t;
  struct Col { const T* x; int64_t p, q; };
  struct KB { int64_t c, r, s; };

  const T* x;
  const T* w;
  const T* bias;
  T* y;
  Activation act;
  T slope;
  int64_t M, Ncols, Kred;
  int64_t C, Cg, H, W, K, HW, PQ, sh, sw, ph, pw, dh, dw;
  Div by_rs, by_s, by_pq, by_q;

  static ForwardOp make(const ConvArgs<T>& a) {
    const ConvShape& s = a.s;
    ForwardOp op;
    op.x = a.x; op.w = a.w; op.bias = a.bias; op.y = a.y; op.act = a.act; op.slope = a.slope;
    op.M = s.k_per_group(); op.Ncols = s.N * s.P * s.Q; op.Kred = s.crs();
    op.C = s.C; op.Cg = s.c_per_group(); op.H = s.H; op.W = s.W; op.K = s.K;
    op.HW = s.H * s.W; op.PQ = s.P * s.Q;
    op.sh = s.stride_h; op.sw = s.stride_w; op.ph = s.pad_h; op.pw = s.pad_w; op.dh = s.dil_h; op.dw = s.dil_w;
    op.by_rs = Div(s.R * s.S); op.by_s = Div(s.S); op.by_pq = Div(op.PQ); op.by_q = Div(s.Q);
    return op;
  }
  static bool fits32(const ConvShape& s) { return s.crs() <= kMax32 && s.N * s.P * s.Q <= kMax32; }

  __device__ __forceinline__ Row row(int64_t g, int64_t m) const { return w + (g * M + m) * Kred; }
  __device__ __forceinline__ KA ka(int64_t kk) const { return kk; }
  __device__ __forceinline__ T a(Row row, KA kk) const { return __ldg(row + kk); }

  __device__ __forceinline__ Col col(int64_t g, int64_t n) const {
    const Index3 i = split3(n, by_pq, by_q);  // (img, p, q)
    return {x + (i.hi * C + g * Cg) * HW, i.mid, i.lo};
  }
  __device__ __forceinline__ KB kb(int64_t kk) const {
    const Index3 i = split3(kk, by_rs, by_s);  // (c, r, s)
    return {i.hi, i.mid, i.lo};
  }
  __device__ __forceinline__ T b(const Col& col, const KB& k) const {
    const int64_t h = conv_in_coord(col.p, k.r, sh, ph, dh);
    const int64_t v = conv_in_coord(col.q, k.s, sw, pw, dw);
    return in_range(h, H) && in_range(v, W) ? __ldg(col.x + k.c * HW + h * W + v) : T(0);
  }

  __device__ __forceinline__ void store(int64_t g, int64_t m, int64_t n, T v) const {
    const int64_t k = g * M + m;
    int64_t img, pq;
    by_pq.divmod(n, img, pq);
    y[(img * K + k) * PQ + pq] = activate(bias != nullptr ? v + __ldg(bias + k) : v, act, slope);
  }
};

template <typename T, bool k32>
struct GradInputOp {
  using Div = Divider<k32>;
  static constexpr bool kBAlongK = false;
  using Row = const T*;
  using KA = int64_t;
  struct Col { const T* dy; int64_t h, w; };
  struct KB { int64_t kl, r, s; };

  const T* w;
  const T* dy;
  T* dx;
  int64_t M, Ncols, Kred;
  int64_t C, Cg, K, Kg, RS, HW, P, Q, PQ, sh, sw, ph, pw, dh, dw;
  Div by_rs, by_s, by_hw, by_w, by_sh, by_sw;

  static GradInputOp make(const ConvArgs<T>& a) {
    const ConvShape& s = a.s;
    GradInputOp op;
    op.w = a.w; op.dy = a.dy; op.dx = a.dx;
    op.M = s.c_per_group(); op.Ncols = s.N * s.H * s.W; op.Kred = s.k_per_group() * s.R * s.S;
    op.C = s.C; op.Cg = s.c_per_group(); op.K = s.K; op.Kg = s.k_per_group(); op.RS = s.R * s.S;
    op.HW = s.H * s.W; op.P = s.P; op.Q = s.Q; op.PQ = s.P * s.Q;
    op.sh = s.stride_h; op.sw = s.stride_w; op.ph = s.pad_h; op.pw = s.pad_w; op.dh = s.dil_h; op.dw = s.dil_w;
    op.by_rs = Div(op.RS); op.by_s = Div(s.S); op.by_hw = Div(op.HW); op.by_w = Div(s.W);
    op.by_sh = Div(s.stride_h); op.by_sw = Div(s.stride_w);
    return op;
  }
  // out_coord's dividend is at most H - 1 + pad_h (resp. W - 1 + pad_w).
  static bool fits32(const ConvShape& s) {
    return s.k_per_group() * s.R * s.S <= kMax32 && s.N * s.H * s.W <= kMax32 && s.H + s.pad_h <= kMax32 &&
           s.W + s.pad_w <= kMax32;
  }

  // A(c, (kl, r, s)) = w[g*Kg + kl, c, r, s]
  __device__ __forceinline__ Row row(int64_t g, int64_t c) const { return w + (g * Kg * Cg + c) * RS; }
  __device__ __forceinline__ KA ka(int64_t kk) const {
    int64_t kl, rs;
    by_rs.divmod(kk, kl, rs);
    return kl * Cg * RS + rs;
  }
  __device__ __forceinline__ T a(Row row, KA off) const { return __ldg(row + off); }

  // B((kl, r, s), (img, h, w)) = dy[img, g*Kg + kl, p, q] for the (p, q) reading (h, w) through tap (r, s)
  __device__ __forceinline__ Col col(int64_t g, int64_t n) const {
    const Index3 i = split3(n, by_hw, by_w);  // (img, h, w)
    return {dy + (i.hi * K + g * Kg) * PQ, i.mid, i.lo};
  }
  __device__ __forceinline__ KB kb(int64_t kk) const {
    const Index3 i = split3(kk, by_rs, by_s);  // (kl, r, s)
    return {i.hi, i.mid, i.lo};
  }
  __device__ __forceinline__ T b(const Col& col, const KB& k) const {
    const int64_t p = out_coord<k32>(col.h, k.r, sh, ph, dh, P, by_sh);
    if (p < 0) return T(0);
    const int64_t q = out_coord<k32>(col.w, k.s, sw, pw, dw, Q, by_sw);
    if (q < 0) return T(0);
    return __ldg(col.dy + k.kl * PQ + p * Q + q);
  }

  __device__ __forceinline__ void store(int64_t g, int64_t c, int64_t n, T v) const {
    int64_t img, hw;
    by_hw.divmod(n, img, hw);
    dx[(img * C + g * Cg + c) * HW + hw] = v;
  }
};

template <typename T, bool k32>
struct GradWeightOp {
  using Div = Divider<k32>;
  static constexpr bool kBAlongK = true;
  using Row = const T*;
  using KA = int64_t;
  struct Col { const T* x; int64_t r, s; };
  struct KB { int64_t img_off, p, q; };

  const T* x;
  const T* dy;
  T* dw;
  int64_t M, Ncols, Kred;
  int64_t Cg, H, W, HW, KPQ, CHW, PQ, sh, sw, ph, pw, dil_h, dil_w;
  Div by_rs, by_s, by_pq, by_q;

  static GradWeightOp make(const ConvArgs<T>& a) {
    const ConvShape& s = a.s;
    GradWeightOp op;
    op.x = a.x; op.dy = a.dy; op.dw = a.dw;
    op.M = s.k_per_group(); op.Ncols = s.crs(); op.Kred = s.N * s.P * s.Q;
    op.Cg = s.c_per_group(); op.H = s.H; op.W = s.W; op.HW = s.H * s.W;
    op.PQ = s.P * s.Q; op.KPQ = s.K * op.PQ; op.CHW = s.C * op.HW;
    op.sh = s.stride_h; op.sw = s.stride_w; op.ph = s.pad_h; op.pw = s.pad_w; op.dil_h = s.dil_h; op.dil_w = s.dil_w;
    op.by_rs = Div(s.R * s.S); op.by_s = Div(s.S); op.by_pq = Div(op.PQ); op.by_q = Div(s.Q);
    return op;
  }
  static bool fits32(const ConvShape& s) { return s.crs() <= kMax32 && s.N * s.P * s.Q <= kMax32; }

  // A(k, (img, p, q)) = dy[img, g*Kg + k, p, q]
  __device__ __forceinline__ Row row(int64_t g, int64_t m) const { return dy + (g * M + m) * PQ; }
  __device__ __forceinline__ KA ka(int64_t kk) const {
    int64_t img, pq;
    by_pq.divmod(kk, img, pq);
    return img * KPQ + pq;
  }
  __device__ __forceinline__ T a(Row row, KA off) const { return __ldg(row + off); }

  // B((img, p, q), (c, r, s)) = x[img, g*Cg + c, p*sh - ph + r*dh, q*sw - pw + s*dw]
  __device__ __forceinline__ Col col(int64_t g, int64_t n) const {
    const Index3 i = split3(n, by_rs, by_s);  // (c, r, s)
    return {x + (g * Cg + i.hi) * HW, i.mid, i.lo};
  }
  __device__ __forceinline__ KB kb(int64_t kk) const {
    const Index3 i = split3(kk, by_pq, by_q);  // (img, p, q)
    return {i.hi * CHW, i.mid, i.lo};
  }
  __device__ __forceinline__ T b(const Col& col, const KB& k) const {
    const int64_t h = conv_in_coord(k.p, col.r, sh, ph, dil_h);
    const int64_t v = conv_in_coord(k.q, col.s, sw, pw, dil_w);
    return in_range(h, H) && in_range(v, W) ? __ldg(col.x + k.img_off + h * W + v) : T(0);
  }

  __device__ __forceinline__ void store(int64_t g, int64_t m, int64_t n, T v) const {
    dw[(g * M + m) * Ncols + n] = v;
  }
};

// ---------------------------------------------------------------------------------------------------
// The shared main loop. Work item `tile` = (column tile, row tile, group, reduction chunk), column tile
// fastest so that consecutive blocks share their A rows in L2. With splits == 1 the epilogue stores
// through the Op; otherwise it writes the raw partial tile to partial[split][g][m][n].
// ---------------------------------------------------------------------------------------------------
template <typename T, class Op>
__global__ void __launch_bounds__(kThreads)
    igemm_kernel(const Op op, int64_t groups, int64_t splits, int64_t chunk, T* __restrict__ partial) {
  // +1 column: the loaders store along the reduction (consecutive threads, consecutive rows of the
  // tile), which without padding would put a whole warp's stores into one or two banks.
  __shared__ T As[kBK][kBM + 1];
  __shared__ T Bs[kBK][kBN + 1];

  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;  // compute layout: rows ty + 16i, columns tx + 16j
  const int lk = tid % kBK, lr = tid / kBK;  // reduction-major loader: index lk, rows/columns lr + kRowStep*i
  const int ln = tid % kBN, lq = tid / kBN;  // column-major loader (B only): column ln, indices lq + kKStep*i

  const int64_t tiles_n = ceil_div(op.Ncols, kBN), tiles_m = ceil_div(op.M, kBM);
  const int64_t tiles = tiles_n * tiles_m * groups * splits;

  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t n0 = (tile % tiles_n) * kBN;
    const int64_t m0 = (tile / tiles_n % tiles_m) * kBM;
    const int64_t g = tile / (tiles_n * tiles_m) % groups;
    const int64_t sp = tile / (tiles_n * tiles_m * groups);
    const int64_t kbeg = sp * chunk, kend = min(op.Kred, kbeg + chunk);

    typename Op::Row rows[kLoads];
    bool row_ok[kLoads];
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int64_t m = m0 + lr + kRowStep * i;
      row_ok[i] = m < op.M;
      rows[i] = row_ok[i] ? op.row(g, m) : typename Op::Row{};
    }
    constexpr int kCols = Op::kBAlongK ? kLoads : 1;
    typename Op::Col cols[kCols];
    bool col_ok[kCols];
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
      const int64_t n = n0 + (Op::kBAlongK ? lr + kRowStep * i : ln);
      col_ok[i] = n < op.Ncols;
      cols[i] = col_ok[i] ? op.col(g, n) : typename Op::Col{};
    }

    // Global -> registers for the k-tile at k0; registers -> shared memory happens after the previous
    // tile's arithmetic, so the loads of tile t+1 are in flight while tile t is multiplied.
    T a_reg[kLoads], b_reg[kLoads];
    auto load = [&](int64_t k0) {
      const int64_t kk = k0 + lk;
      const bool k_ok = kk < kend;
      const typename Op::KA ka = k_ok ? op.ka(kk) : typename Op::KA{};
#pragma unroll
      for (int i = 0; i < kLoads; ++i) a_reg[i] = k_ok && row_ok[i] ? op.a(rows[i], ka) : T(0);
      if constexpr (Op::kBAlongK) {
        const typename Op::KB kb = k_ok ? op.kb(kk) : typename Op::KB{};
#pragma unroll
        for (int i = 0; i < kLoads; ++i) b_reg[i] = k_ok && col_ok[i] ? op.b(cols[i], kb) : T(0);
      } else {
#pragma unroll
        for (int i = 0; i < kLoads; ++i) {
          const int64_t kb_idx = k0 + lq + kKStep * i;
          b_reg[i] = kb_idx < kend && col_ok[0] ? op.b(cols[0], op.kb(kb_idx)) : T(0);
        }
      }
    };

    T acc[kTM][kTN];
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc[i][j] = T(0);

    load(kbeg);
    for (int64_t k0 = kbeg; k0 < kend; k0 += kBK) {
#pragma unroll
      for (int i = 0; i < kLoads; ++i) As[lk][lr + kRowStep * i] = a_reg[i];
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        if constexpr (Op::kBAlongK) Bs[lk][lr + kRowStep * i] = b_reg[i];
        else Bs[lq + kKStep * i][ln] = b_reg[i];
      }
      __syncthreads();
      if (k0 + kBK < kend) load(k0 + kBK);
#pragma unroll
      for (int k = 0; k < kBK; ++k) {
        T av[kTM], bv[kTN];
#pragma unroll
        for (int i = 0; i < kTM; ++i) av[i] = As[k][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < kTN; ++j) bv[j] = Bs[k][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < kTM; ++i)
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] += av[i] * bv[j];
      }
      // The next iteration overwrites the tiles: everyone must be done reading them.
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int64_t m = m0 + ty + 16 * i;
      if (m >= op.M) continue;
#pragma unroll
      for (int j = 0; j < kTN; ++j) {
        const int64_t n = n0 + tx + 16 * j;
        if (n >= op.Ncols) continue;
        if (splits > 1) partial[((sp * groups + g) * op.M + m) * op.Ncols + n] = acc[i][j];
        else op.store(g, m, n, acc[i][j]);
      }
    }
  }
}

// Sums the partial tiles of every output element in split order and stores the result through the Op.
template <typename T, class Op>
__global__ void __launch_bounds__(kThreads)
    splitk_reduce_kernel(const Op op, int64_t groups, int64_t splits, const T* __restrict__ partial) {
  const int64_t per_split = groups * op.M * op.Ncols;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < per_split; e += int64_t(gridDim.x) * kThreads) {
    T sum = partial[e];
    for (int64_t sp = 1; sp < splits; ++sp) sum += partial[sp * per_split + e];
    const int64_t n = e % op.Ncols, gm = e / op.Ncols;
    op.store(gm / op.M, gm % op.M, n, sum);
  }
}

// One block per output channel (looping when K exceeds the grid). Each thread walks the flattened
// (image, position) index with stride kThreads in a fixed order, then a shared-memory tree combines the
// threads: the same order every run. float accumulates in double, which this memory-bound pass gets free.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    grad_bias_kernel(const T* __restrict__ dy, T* __restrict__ db, int64_t N, int64_t K, int64_t PQ) {
  using Acc = double;
  __shared__ Acc part[kThreads];
  const int tid = threadIdx.x;
  // Stepping the flat index by kThreads advances the position by kThreads % PQ, with at most one carry.
  const int64_t img0 = PQ > 0 ? tid / PQ : N, pq0 = PQ > 0 ? tid % PQ : 0;
  const int64_t step_img = PQ > 0 ? kThreads / PQ : 0, step_pq = PQ > 0 ? kThreads % PQ : 0;
  for (int64_t k = blockIdx.x; k < K; k += gridDim.x) {
    Acc sum = 0;
    for (int64_t img = img0, pq = pq0; img < N;) {
      sum += Acc(dy[(img * K + k) * PQ + pq]);
      pq += step_pq;
      img += step_img;
      if (pq >= PQ) {
        pq -= PQ;
        ++img;
      }
    }
    part[tid] = sum;
    __syncthreads();
#pragma unroll
    for (int width = kThreads / 2; width > 0; width /= 2) {
      if (tid < width) part[tid] += part[tid + width];
      __syncthreads();
    }
    if (tid == 0) db[k] = T(part[0]);
    // part[0] must be read before the next channel's sums overwrite it.
    __syncthreads();
  }
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string("medkern ") + what + ": " + cudaGetErrorString(err));
}

// Frees a stream-ordered allocation after the work queued before it, also when a launch throws.
struct StreamBuffer {
  void* ptr = nullptr;
  cudaStream_t stream = nullptr;
  StreamBuffer() = default;
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (ptr != nullptr) cudaFreeAsync(ptr, stream);
  }
};

// How many chunks to split the reduction into. Splitting pays only while the output tiles alone leave
// the GPU idle; each chunk keeps at least kMinChunk reduction steps so the extra partial-tile traffic
// stays small against the arithmetic. The answer depends on the shape only, never on the device.
constexpr int64_t kTargetBlocks = 512, kMinChunk = 16 * kBK, kMaxSplits = 128;
constexpr int64_t kMaxWorkspaceBytes = int64_t(1) << 30;

int64_t choose_splits(int64_t tiles, int64_t reduction, int64_t out_bytes) {
  if (tiles >= kTargetBlocks) return 1;
  int64_t splits = std::min({ceil_div(kTargetBlocks, tiles), reduction / kMinChunk, kMaxSplits,
                             kMaxWorkspaceBytes / std::max<int64_t>(out_bytes, 1)});
  return std::max<int64_t>(splits, 1);
}

template <typename T, class Op>
void run_igemm(const Op& op, int64_t groups, cudaStream_t stream, const char* what) {
  const int64_t tiles = ceil_div(op.Ncols, kBN) * ceil_div(op.M, kBM) * groups;
  if (tiles == 0) return;
  const int64_t out_elems = groups * op.M * op.Ncols;
  int64_t splits = choose_splits(tiles, op.Kred, out_elems * int64_t(sizeof(T)));
  // Chunks are whole k-tiles; recounting after rounding up leaves no chunk empty.
  int64_t chunk = splits > 1 ? ceil_div(ceil_div(op.Kred, splits), kBK) * kBK : std::max<int64_t>(op.Kred, 1);
  splits = ceil_div(std::max<int64_t>(op.Kred, 1), chunk);

  StreamBuffer ws;
  if (splits > 1) {
    ws.stream = stream;
    if (cudaMallocAsync(&ws.ptr, size_t(splits * out_elems) * sizeof(T), stream) != cudaSuccess) {
      // Out of memory for the workspace: clear the error and run unsplit (slower, same contract).
      (void)cudaGetLastError();
      ws.ptr = nullptr;
      splits = 1;
      chunk = std::max<int64_t>(op.Kred, 1);
    }
  }
  T* partial = static_cast<T*>(ws.ptr);
  const int64_t blocks = std::min(tiles * splits, kMaxBlocks);
  igemm_kernel<T, Op><<<unsigned(blocks), kThreads, 0, stream>>>(op, groups, splits, chunk, partial);
  check_launch(what);
  if (splits > 1) {
    const int64_t rblocks = std::min(ceil_div(out_elems, kThreads), kMaxBlocks);
    splitk_reduce_kernel<T, Op><<<unsigned(rblocks), kThreads, 0, stream>>>(op, groups, splits, partial);
    check_launch(what);
  }
}

template <typename T, template <typename, bool> class Op>
void run_problem(const ConvArgs<T>& a, intptr_t stream, const char* what) {
  const cudaStream_t st = reinterpret_cast<cudaStream_t>(stream);
  if (Op<T, true>::fits32(a.s)) run_igemm<T>(Op<T, true>::make(a), a.s.groups, st, what);
  else run_igemm<T>(Op<T, false>::make(a), a.s.groups, st, what);
}

}  // namespace

template <typename T>
void conv2d_forward(const ConvArgs<T>& a, intptr_t stream) {
  run_problem<T, ForwardOp>(a, stream, "conv2d_forward");
}

template <typename T>
void conv2d_grad_input(const ConvArgs<T>& a, intptr_t stream) {
  run_problem<T, GradInputOp>(a, stream, "conv2d_grad_input");
}

template <typename T>
void conv2d_grad_weight(const ConvArgs<T>& a, intptr_t stream) {
  run_problem<T, GradWeightOp>(a, stream, "conv2d_grad_weight");
}

template <typename T>
void conv2d_grad_bias(const ConvArgs<T>& a, intptr_t stream) {
  const ConvShape& s = a.s;
  if (s.K <= 0) return;
  const int64_t blocks = std::min(s.K, kMaxBlocks);
  grad_bias_kernel<T><<<unsigned(blocks), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      a.dy, a.db, s.N, s.K, s.P * s.Q);
  check_launch("conv2d_grad_bias");
}

template void conv2d_forward<float>(const ConvArgs<float>&, intptr_t);
template void conv2d_forward<double>(const ConvArgs<double>&, intptr_t);
template void conv2d_grad_input<float>(const ConvArgs<float>&, intptr_t);
template void conv2d_grad_input<double>(const ConvArgs<double>&, intptr_t);
template void conv2d_grad_weight<float>(const ConvArgs<float>&, intptr_t);
template void conv2d_grad_weight<double>(const ConvArgs<double>&, intptr_t);
template void conv2d_grad_bias<float>(const ConvArgs<float>&, intptr_t);
template void conv2d_grad_bias<double>(const ConvArgs<double>&, intptr_t);

}  // namespace medkern::cuda

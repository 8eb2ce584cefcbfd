// The weight gradient of a 3x3 (3x3x3) stride-1 layer by Winograd's minimal filtering. The forward computes each
// output tile as Y = A^T [ sum_c U_kc .* V_c ] A with U = G g G^T and V = B^T d B (each transform applied along
// every axis: twice for images, three times for volumes); differentiating, the gradient reaching U_kc is the sum
// over tiles of dM_k .* V_c with dM = A dY A^T, and g's is G^T dU G. For each of the a^d positions e that is one
// GEMM reducing over the batch's tiles:
//   dU_e (K x C) = dM_e (K x tiles) * V_e^T (tiles x C),
// a^d products per tile and channel pair where direct convolution needs m^d r^d.
//
// Each thread takes a share of the tiles, in reduction blocks of KC, and sums its own dU; the threads' sums are
// added when the kernel transform runs. Within a block, the input rows and output-gradient rows a row of tiles
// reads are first transposed to channels-last in a small buffer, so that both transforms run a vector of channels
// at a time and store whole vectors: V_e into gemm.h's packed-B panels of input channels, dM_e tile by tile with
// output channels contiguous, which the micro-kernel reads in place as a column-major A (ALayout::columns).
// (Vectorised across tiles instead, a 28x28 map's row of 7 tiles filled under half a vector and the panels needed
// scattered stores: the transforms then took twice the GEMMs' time.)
#include "conv_grad_weight_winograd.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "gemm.h"
#include "thread_scratch.h"
#include "threading.h"
#include "winograd_transforms.h"

namespace medkern::cpu {
namespace {

// The transposes the backward applies: A (a x m) takes an output tile to the transformed domain, G^T (r x a)
// takes a transformed kernel back.
template <int R, int C>
struct Matrix {
  double v[R][C];
};
template <int R, int C>
constexpr Matrix<C, R> transposed(const double (&m)[R][C]) {
  Matrix<C, R> t{};
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < C; ++j) t.v[j][i] = m[i][j];
  return t;
}
template <class F>
struct Backward {
  static constexpr Matrix<F::a, F::m> A = transposed(F::AT);
  static constexpr Matrix<F::r, F::a> GT = transposed(F::G);
};

constexpr int power(int base, int exponent) { return exponent == 0 ? 1 : base * power(base, exponent - 1); }

// Slots of thread_scratch: 0 dM, 1 V, 2 the channels-last rows, 3 the thread's dU.
inline int64_t round_up(int64_t n, int64_t to) { return ceil_div(n, to) * to; }

// Rows of a plane set, channels-last: out[r][j][c] = channel c's row rows[r] (a row index within the channel's
// planes, or -1 for a row of padding) at column j - pad, zero outside the row, for j < width and every channel,
// `channels` rounded up to a vector (zero past them). L channels x L columns at a time, by Vec::transpose.
template <typename T, int Rows>
void channels_last(const T* x, int64_t channels, int64_t channel_size, int64_t W, const int64_t (&rows)[Rows],
                   int64_t pad, int64_t width, T* out) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t cp = round_up(channels, L);
  for (int r = 0; r < Rows; ++r) {
    T* dst = out + r * width * cp;
    if (rows[r] < 0) {
      std::fill(dst, dst + width * cp, T(0));
      continue;
    }
    for (int64_t c0 = 0; c0 < cp; c0 += L)
      for (int64_t j0 = 0; j0 < width; j0 += L) {
        const int64_t first = j0 - pad;
        const int lo = static_cast<int>(std::clamp<int64_t>(-first, 0, L));
        const int hi = static_cast<int>(std::clamp<int64_t>(W - first, lo, L));
        V v[L];
        for (int l = 0; l < L; ++l)
          v[l] = c0 + l < channels ? Vec<T>::load_range(x + (c0 + l) * channel_size + rows[r] * W, first, lo, hi)
                                   : V{};
        Vec<T>::transpose(v);
        for (int64_t jj = 0; jj < std::min<int64_t>(L, width - j0); ++jj) Vec<T>::store(dst + (j0 + jj) * cp + c0, v[jj]);
      }
  }
}

// The layer's geometry along its Dims axes (depth first for volumes).
template <int Dims>
struct Axes {
  int64_t in[3], out[3], pad[3];
  explicit Axes(const ConvShape& s)
      : in{Dims == 3 ? s.D : s.H, Dims == 3 ? s.H : s.W, s.W}, out{Dims == 3 ? s.O : s.P, Dims == 3 ? s.P : s.Q, s.Q},
        pad{Dims == 3 ? s.pad_d : s.pad_h, Dims == 3 ? s.pad_h : s.pad_w, s.pad_w} {}
};

template <typename T, class F, int Dims>
class Worker {
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  static constexpr int L = Vec<T>::lanes, M = F::m, A = F::a, E = power(A, Dims);
  static constexpr int kInRows = power(A, Dims - 1), kOutRows = power(M, Dims - 1);  // rows a row of tiles reads

 public:
  Worker(const ConvShape& s, const T* x, const T* dy)
      : s_(s), ax_(s), x_(x), dy_(dy), tiles_{1, 1, 1},
        c_vec_(round_up(s.C, L)), k_vec_(round_up(s.K, L)), c_cols_(round_up(s.C, G::NR)),
        m_stride_(k_vec_ * G::KC + 16), v_stride_(c_cols_ * G::KC + 16) {
    for (int d = 0; d < Dims; ++d) tiles_[d] = ceil_div(ax_.out[d], M);
    in_width_ = tiles_[Dims - 1] * M + A - M;
    out_width_ = tiles_[Dims - 1] * M;
    dm_ = thread_scratch<T>(0, E * m_stride_);
    v_ = thread_scratch<T>(1, E * v_stride_);
    rows_ = thread_scratch<T>(2, kInRows * in_width_ * c_vec_ + kOutRows * out_width_ * k_vec_);
    dy_rows_ = rows_ + kInRows * in_width_ * c_vec_;
    du_ = thread_scratch<T>(3, E * s.K * s.C);
  }

  const T* sums() const { return du_; }

  // Adds block `first .. first + count - 1` of the batch's tiles to this thread's dU (sets it for the first).
  void add_block(int64_t first, int64_t count, bool accumulate) {
    for_each_run(first, count, [&](int64_t n, int64_t row, int64_t tc, int64_t len, int64_t col) {
      load_tile_row(n, row);
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t k0 = 0; k0 < s_.K; k0 += L) transform_output_gradient(tc + t, k0, col + t);
        for (int64_t c0 = 0; c0 < s_.C; c0 += L) transform_input(tc + t, c0, col + t, count);
      }
    });
    const int64_t m_panels = ceil_div(s_.K, G::MR), n_panels = c_cols_ / G::NR;
    for (int e = 0; e < E; ++e)
      for (int64_t jp = 0; jp < n_panels; ++jp) {
        const int n_valid = static_cast<int>(std::min<int64_t>(G::NR, s_.C - jp * G::NR));
        for (int64_t ip = 0; ip < m_panels; ++ip) {
          const int m_valid = static_cast<int>(std::min<int64_t>(G::MR, s_.K - ip * G::MR));
          micro_kernel<T, ALayout::columns>(count, dm_ + e * m_stride_ + ip * G::MR,
                                            v_ + e * v_stride_ + jp * G::NR * count,
                                            du_ + (e * s_.K + ip * G::MR) * s_.C + jp * G::NR, s_.C, m_valid,
                                            n_valid, nullptr, accumulate, {}, k_vec_);
        }
      }
  }

 private:
  // f(n, row, tc, len, col) for each run of tiles from `first` that lies in one row of tiles (image n; row: the
  // row's index among the image's, depth-major for volumes; tiles tc .. tc + len - 1), `col` tiles after `first`.
  template <class Fn>
  void for_each_run(int64_t first, int64_t count, Fn&& f) const {
    const int64_t per_row = tiles_[Dims - 1], per_image = tiles_[0] * tiles_[1] * tiles_[2];
    for (int64_t done = 0; done < count;) {
      const int64_t t = first + done, rem = t % per_image;
      const int64_t tc = rem % per_row, len = std::min(per_row - tc, count - done);
      f(t / per_image, rem / per_row, tc, len, done);
      done += len;
    }
  }

  // Row r of a row of tiles (`row` among the image's; r < Rows, depth-major for volumes) as a row index within a
  // channel's planes, or -1 where it lies in the padding or past the map; tiles step M and start at -pad.
  template <int Rows>
  void tile_rows(int64_t row, int reach, const int64_t* size, const int64_t* pad, int64_t (&rows)[Rows]) const {
    const int64_t tr = row % tiles_[Dims - 2];
    const int64_t td = Dims == 3 ? row / tiles_[Dims - 2] : 0;
    for (int r = 0; r < Rows; ++r) {
      const int64_t h = M * tr + r % reach - pad[Dims - 2];
      const int64_t d = Dims == 3 ? M * td + r / reach - pad[0] : 0;
      const bool inside = h >= 0 && h < size[Dims - 2] && d >= 0 && (Dims == 2 || d < size[0]);
      rows[r] = inside ? d * size[Dims - 2] + h : -1;
    }
  }

  // The input rows and output-gradient rows a row of tiles of image n reads, channels-last.
  void load_tile_row(int64_t n, int64_t row) {
    static constexpr int64_t kNoPad[3] = {0, 0, 0};
    int64_t in_rows[kInRows], out_rows[kOutRows];
    tile_rows(row, A, ax_.in, ax_.pad, in_rows);
    tile_rows(row, M, ax_.out, kNoPad, out_rows);
    const int64_t in_size = s_.D * s_.H * s_.W, out_size = s_.O * s_.P * s_.Q;
    channels_last<T, kInRows>(x_ + n * s_.C * in_size, s_.C, in_size, s_.W, in_rows, s_.pad_w, in_width_, rows_);
    channels_last<T, kOutRows>(dy_ + n * s_.K * out_size, s_.K, out_size, s_.Q, out_rows, 0, out_width_, dy_rows_);
  }

  // dM_e[col, k0 ..] = (A dY A^T)_e of tile tc for output channels k0 .. k0 + L - 1.
  void transform_output_gradient(int64_t tc, int64_t k0, int64_t col) {
    V d[power(M, Dims)], out[E];
    for (int r = 0; r < kOutRows; ++r)
      for (int j = 0; j < M; ++j) d[r * M + j] = Vec<T>::load(dy_rows_ + (r * out_width_ + M * tc + j) * k_vec_ + k0);
    transform_nd<T, Dims>(Backward<F>::A.v, d, out);
    T* dst = dm_ + col * k_vec_ + k0;
    for (int e = 0; e < E; ++e) Vec<T>::store(dst + e * m_stride_, out[e]);
  }

  // V_e[col, c0 ..] = (B^T d B)_e of tile tc for input channels c0 .. c0 + L - 1, in the packed-B panel of a
  // block of `count` tiles.
  void transform_input(int64_t tc, int64_t c0, int64_t col, int64_t count) {
    V d[E], out[E];
    for (int r = 0; r < kInRows; ++r)
      for (int j = 0; j < A; ++j) d[r * A + j] = Vec<T>::load(rows_ + (r * in_width_ + M * tc + j) * c_vec_ + c0);
    transform_nd<T, Dims>(F::BT, d, out);
    T* dst = v_ + (c0 / G::NR) * G::NR * count + col * G::NR + c0 % G::NR;
    for (int e = 0; e < E; ++e) Vec<T>::store(dst + e * v_stride_, out[e]);
  }

  const ConvShape& s_;
  const Axes<Dims> ax_;
  const T* x_;
  const T* dy_;
  int64_t tiles_[3];
  const int64_t c_vec_, k_vec_, c_cols_, m_stride_, v_stride_;
  int64_t in_width_, out_width_;
  T* dm_;
  T* v_;
  T* rows_;
  T* dy_rows_;
  T* du_;
};

// dw[k, c] = G^T (sum of the threads' dU[k, c]) G, along every axis.
template <typename T, class F, int Dims>
void transform_kernel(const ConvShape& s, const std::vector<const T*>& sums, int64_t kc, T* dw) {
  constexpr int E = power(F::a, Dims), taps = power(F::r, Dims);
  T u[E];
  for (int e = 0; e < E; ++e) {
    T total = 0;
    for (const T* du : sums) total += du[e * s.K * s.C + kc];
    u[e] = total;
  }
  transform_nd<T, Dims>(Backward<F>::GT.v, u, dw + kc * taps);
}

// Tiles a thread sums at least: each thread's dU costs a pass over a^d K C sums, as much as the GEMMs of a few
// dozen tiles.
constexpr int64_t kMinTilesPerThread = 32;

template <typename T, class F, int Dims>
void grad_weight(const ConvShape& s, const T* x, const T* dy, T* dw) {
  constexpr int64_t KC = GemmTile<T>::KC;
  const Axes<Dims> ax(s);
  int64_t tiles = s.N;
  for (int d = 0; d < Dims; ++d) tiles *= ceil_div(ax.out[d], F::m);
  const int threads = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(threads_for(tiles * s.K * s.C * power(F::a, Dims)), tiles / kMinTilesPerThread)));
  const int64_t per_thread = ceil_div(tiles, threads);
  std::vector<const T*> sums(threads, nullptr);
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    const int64_t first = id * per_thread, last = std::min(tiles, first + per_thread);
    Worker<T, F, Dims> worker(s, x, dy);
    for (int64_t b = first; b < last; b += KC) worker.add_block(b, std::min(KC, last - b), b != first);
    if (first < last) sums[id] = worker.sums();
#pragma omp barrier
#pragma omp single
    sums.erase(std::remove(sums.begin(), sums.end(), nullptr), sums.end());
#pragma omp for schedule(static)
    for (int64_t kc = 0; kc < s.K * s.C; ++kc) transform_kernel<T, F, Dims>(s, sums, kc, dw);
  }
}

}  // namespace

template <typename T>
void conv_grad_weight_winograd(ConvPath scheme, const ConvShape& s, const T* x, const T* dy, T* dw) {
  switch (scheme) {
    case ConvPath::grad_weight_winograd_f2x3: return grad_weight<T, F2x3, 2>(s, x, dy, dw);
    case ConvPath::grad_weight_winograd_f4x3: return grad_weight<T, F4x3, 2>(s, x, dy, dw);
    case ConvPath::grad_weight_winograd3d_f2x3: return grad_weight<T, F2x3, 3>(s, x, dy, dw);
    default: throw std::logic_error("conv_grad_weight_winograd: not a Winograd grad-weight path");
  }
}

template void conv_grad_weight_winograd<float>(ConvPath, const ConvShape&, const float*, const float*, float*);
template void conv_grad_weight_winograd<double>(ConvPath, const ConvShape&, const double*, const double*, double*);

}  // namespace medkern::cpu

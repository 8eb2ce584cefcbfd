// Winograd's F(2x2x2, 3x3x3) for 3x3x3 stride-1 convolutions of volumes: the 2-d F(2x2, 3x3) applied along
// every axis (Lavin & Gray 2016). A 2x2x2 block of outputs (a tile) reads a 4x4x4 input patch d; with the
// kernel g,
//   Y = A^T x3 [ (G x3 g) .* (B^T x3 d) ],   (x3: the 1-d transform along each of the three axes)
// and the product summed over input channels is, for each of the 64 positions e of a transformed tile, one
// GEMM M_e (K x tiles) = U_e (K x C) * V_e (C x tiles): 64 multiplications per tile and channel pair where
// direct convolution needs 8 * 27 = 216.
//
// The GEMM columns are the tiles of the whole batch. Each thread takes blocks of whole column panels: it
// writes V_e of its block straight into the micro-kernel's packed-B layout, runs the 64 GEMMs into M (64 x K x
// block), then applies the output transform L tiles at a time (one vector per transformed position, the lanes
// being tiles), adds the bias and the activation, and stores the 2x2x2 outputs of each tile.
#include "conv3d_winograd.h"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "threading.h"
#include "winograd_transforms.h"

namespace medkern::cpu {
namespace {

constexpr int kA = F2x3::a, kM = F2x3::m, kR = F2x3::r;
constexpr int kE = kA * kA * kA;  // transformed positions per tile
// Tiles per column block: V and M of a block (64 x C and 64 x K by 96 columns) are 1.5 MB each at 64 channels, within
// a shared L3 slice; 48 and 192 ran slower at 28^3 x 64 channels (noisy, shared machine).
constexpr int64_t kBlockTiles = 96;



// The tiles of the batch, in (image, depth, row, column) order.
struct TileGrid {
  int64_t d, h, w, per_image, total;
  explicit TileGrid(const ConvShape& s)
      : d(ceil_div(s.O, kM)), h(ceil_div(s.P, kM)), w(ceil_div(s.Q, kM)), per_image(d * h * w),
        total(s.N * per_image) {}
};

// U_e = (G x3 g)_e for every (k, c), packed as GEMM A operands (K x C), U_e at e * packed_a_size(K, C).
template <typename T>
void transform_weights(const ConvShape& s, const T* w, T* packed) {
  const int64_t K = s.K, C = s.C, a_size = packed_a_size<T>(K, C);
  std::vector<T> raw(static_cast<size_t>(kE * K * C));  // raw[(e * K + k) * C + c]
#pragma omp parallel num_threads(threads_for(K * C * kE * 8))
  {
#pragma omp for schedule(static)
    for (int64_t kc = 0; kc < K * C; ++kc) {
      T u[kE];
      transform_nd<T, 3>(F2x3::G, w + kc * kR * kR * kR, u);
      for (int e = 0; e < kE; ++e) raw[(e * K + kc / C) * C + kc % C] = u[e];
    }
#pragma omp for schedule(static)
    for (int e = 0; e < kE; ++e) pack_a(raw.data() + e * K * C, C, int64_t(1), K, C, packed + e * a_size);
  }
}

// Where one tile sits: its image and the first input (or output) coordinate of each axis, and whether its
// whole 4x4x4 patch lies inside the input (no padding to test element by element).
struct TilePlace {
  int64_t img = 0, d = 0, h = 0, w = 0;
  bool real = false, inside = false;
};

TilePlace input_place(const ConvShape& s, const TileGrid& g, int64_t tile, bool real) {
  TilePlace p;
  if (!real) return p;
  const int64_t in_image = tile % g.per_image;
  p.img = tile / g.per_image;
  p.d = in_image / (g.h * g.w) * kM - s.pad_d;
  p.h = in_image / g.w % g.h * kM - s.pad_h;
  p.w = in_image % g.w * kM - s.pad_w;
  p.real = true;
  p.inside = p.d >= 0 && p.d + kA <= s.D && p.h >= 0 && p.h + kA <= s.H && p.w >= 0 && p.w + kA <= s.W;
  return p;
}

// The 4x4x4 patch of one channel (xc) at `p` into lane `lane` of d (kE x L), zero outside the input.
template <typename T, int L>
inline void gather_patch(const ConvShape& s, const T* xc, const TilePlace& p, int lane, T (*d)[L]) {
  if (p.inside) {
    for (int i = 0; i < kA; ++i)
      for (int j = 0; j < kA; ++j) {
        const T* row = xc + ((p.d + i) * s.H + p.h + j) * s.W + p.w;
        for (int l = 0; l < kA; ++l) d[(i * kA + j) * kA + l][lane] = row[l];
      }
    return;
  }
  // A patch cut by the padding (a third of the tiles of a 28^3 volume): which coordinates of each axis are in
  // range, tested once per axis rather than per element; rows out of range are zero as a whole.
  bool in_d[kA], in_h[kA], in_w[kA];
  for (int i = 0; i < kA; ++i) {
    in_d[i] = p.real && p.d + i >= 0 && p.d + i < s.D;
    in_h[i] = p.real && p.h + i >= 0 && p.h + i < s.H;
    in_w[i] = p.w + i >= 0 && p.w + i < s.W;
  }
  for (int i = 0; i < kA; ++i)
    for (int j = 0; j < kA; ++j) {
      T* out = &d[(i * kA + j) * kA][lane];
      if (!(in_d[i] && in_h[j])) {
        for (int l = 0; l < kA; ++l) out[l * L] = T(0);
        continue;
      }
      const T* row = xc + ((p.d + i) * s.H + p.h + j) * s.W + p.w;
      for (int l = 0; l < kA; ++l) out[l * L] = in_w[l] ? row[l] : T(0);
    }
}

// V_e of tiles [t0, t0 + n) into B panels, L tiles at a time (the lanes of one vector per position e): V_e's
// element (c, t) at e * C * cols + k0 * cols + (t / NR) * NR * kc + (c - k0) * NR + t % NR, for the reduction
// block [k0, k0 + kc) holding c (the layout gemm_packed packs); tiles past n are zero.
template <typename T>
void transform_input(const ConvShape& s, const TileGrid& g, const T* x, int64_t t0, int64_t n, int64_t cols,
                     T* v) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  constexpr int64_t NR = GemmTile<T>::NR, KC = GemmTile<T>::KC;
  const int64_t C = s.C, DHW = s.in_volume();
  for (int64_t t = 0; t < cols; t += L) {
    TilePlace places[L];
    for (int lane = 0; lane < L; ++lane) places[lane] = input_place(s, g, t0 + t + lane, t + lane < n);
    for (int64_t c = 0; c < C; ++c) {
      alignas(64) T d[kE][L];
      for (int lane = 0; lane < L; ++lane)
        gather_patch<T, L>(s, x + (places[lane].img * C + c) * DHW, places[lane], lane, d);
      V dv[kE], uv[kE];
      for (int e = 0; e < kE; ++e) dv[e] = Vec<T>::load(d[e]);
      transform_nd<T, 3>(F2x3::BT, dv, uv);
      const int64_t k0 = c / KC * KC, kc = std::min(KC, C - k0);
      T* at = v + k0 * cols + (t / NR) * NR * kc + (c - k0) * NR + t % NR;
      for (int e = 0; e < kE; ++e) Vec<T>::store(at + e * C * cols, uv[e]);
    }
  }
}

// M_e (K x cols, rows cols apart) = U_e * V_e for every e.
template <typename T>
void multiply(const ConvShape& s, const T* u, const T* v, int64_t cols, T* m) {
  using G = GemmTile<T>;
  const int64_t K = s.K, C = s.C, a_size = packed_a_size<T>(K, C), m_panels = ceil_div(K, G::MR);
  for (int e = 0; e < kE; ++e) {
    const T* ue = u + e * a_size;
    const T* ve = v + e * C * cols;
    T* me = m + e * K * cols;
    for (int64_t k0 = 0; k0 < C; k0 += G::KC) {
      const int64_t kc = std::min<int64_t>(G::KC, C - k0);
      for (int64_t ip = 0; ip < m_panels; ++ip) {
        const int m_valid = static_cast<int>(std::min<int64_t>(G::MR, K - ip * G::MR));
        for (int64_t jp = 0; jp < cols / G::NR; ++jp)
          micro_kernel<T>(kc, ue + m_panels * G::MR * k0 + ip * G::MR * kc, ve + k0 * cols + jp * G::NR * kc,
                          me + ip * G::MR * cols + jp * G::NR, cols, m_valid, G::NR, nullptr, k0 > 0);
      }
    }
  }
}

// Y = A^T x3 M for tiles [t0, t0 + n), L tiles per vector, then bias and activation, stored where inside the
// output.
template <typename T>
void transform_output(const ConvShape& s, const TileGrid& g, const T* m, int64_t t0, int64_t n, int64_t cols,
                      const T* bias, const Epilogue<T>& ep, T* y) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const int64_t K = s.K, OPQ = s.out_volume();
  for (int64_t t = 0; t < n; t += L) {
    const int lanes = static_cast<int>(std::min<int64_t>(L, n - t));
    int64_t base[L];  // each tile's first output within its image's channel-0 volume, and the image
    int64_t img[L];
    bool whole[L];    // all 2x2x2 outputs inside the output
    int extent[L][3];
    for (int lane = 0; lane < lanes; ++lane) {
      const int64_t tile = t0 + t + lane, in_image = tile % g.per_image;
      const int64_t od = in_image / (g.h * g.w) * kM, oh = in_image / g.w % g.h * kM, ow = in_image % g.w * kM;
      img[lane] = tile / g.per_image;
      base[lane] = (od * s.P + oh) * s.Q + ow;
      extent[lane][0] = static_cast<int>(std::min<int64_t>(kM, s.O - od));
      extent[lane][1] = static_cast<int>(std::min<int64_t>(kM, s.P - oh));
      extent[lane][2] = static_cast<int>(std::min<int64_t>(kM, s.Q - ow));
      whole[lane] = extent[lane][0] == kM && extent[lane][1] == kM && extent[lane][2] == kM;
    }
    for (int64_t k = 0; k < K; ++k) {
      V in[kE], out[kM * kM * kM];
      for (int e = 0; e < kE; ++e) in[e] = Vec<T>::load(m + (e * K + k) * cols + t);
      transform_nd<T, 3>(F2x3::AT, in, out);
      const V b = Vec<T>::broadcast(bias ? bias[k] : T(0));
      for (auto& o : out) o = ep.apply(o + b);
      for (int lane = 0; lane < lanes; ++lane) {
        T* yk = y + (img[lane] * K + k) * OPQ + base[lane];
        if (whole[lane]) {
          for (int i = 0; i < kM; ++i)
            for (int j = 0; j < kM; ++j)
              for (int l = 0; l < kM; ++l) yk[(i * s.P + j) * s.Q + l] = out[(i * kM + j) * kM + l][lane];
          continue;
        }
        for (int i = 0; i < extent[lane][0]; ++i)
          for (int j = 0; j < extent[lane][1]; ++j)
            for (int l = 0; l < extent[lane][2]; ++l) yk[(i * s.P + j) * s.Q + l] = out[(i * kM + j) * kM + l][lane];
      }
    }
  }
}

}  // namespace

template <typename T>
int64_t conv3d_winograd_weights_size(const ConvShape& s) {
  return kE * packed_a_size<T>(s.K, s.C);
}

template <typename T>
void conv3d_pack_winograd_weights(const ConvShape& s, const T* w, T* packed) {
  transform_weights(s, w, packed);
}

template <typename T>
void conv3d_forward_winograd(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias, T* y,
                             const Epilogue<T>& ep) {
  constexpr int64_t NR = GemmTile<T>::NR;
  const TileGrid g(s);
  const int threads = threads_for(g.total * kE * s.K * s.C);
  // Column blocks of whole panels (kBlockTiles), enough for every thread.
  const int64_t cols = std::max<int64_t>(NR, std::min(ceil_div(kBlockTiles, NR), ceil_div(ceil_div(g.total, threads), NR)) * NR);
  const int64_t blocks = ceil_div(g.total, cols);
  Buffer<T> own;
  if (!packed) {
    own = alloc_buffer<T>(conv3d_winograd_weights_size<T>(s));
    transform_weights(s, w, own.get());
    packed = own.get();
  }
#pragma omp parallel num_threads(threads)
  {
    Buffer<T> v = alloc_buffer<T>(kE * s.C * cols);
    Buffer<T> m = alloc_buffer<T>(kE * s.K * cols);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t t0 = b * cols, n = std::min(cols, g.total - t0);
      transform_input(s, g, x, t0, n, cols, v.get());
      multiply(s, packed, v.get(), cols, m.get());
      transform_output(s, g, m.get(), t0, n, cols, bias, ep, y);
    }
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                                   \
  template int64_t conv3d_winograd_weights_size<T>(const ConvShape&);                                            \
  template void conv3d_pack_winograd_weights<T>(const ConvShape&, const T*, T*);                                 \
  template void conv3d_forward_winograd<T>(const ConvShape&, const T*, const T*, const T*, const T*, T*,          \
                                           const Epilogue<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

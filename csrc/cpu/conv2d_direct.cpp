#include "conv2d_direct.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "threading.h"

namespace medkern::cpu {
namespace {

// Accumulators the register file holds beside a block's weight vectors and one broadcast: 24 of AVX-512's 32,
// 12 of AVX2's 16.
constexpr int kAccumulators = kVecBytes >= 64 ? 24 : 12;
// Positions per register tile: past 12 the tile rarely fills (a 14-wide row splits 7 + 7) and the switch over
// tile widths instantiates a kernel per width.
constexpr int kMaxTileWidth = 12;

// Vectors per channel block: 2 (half the broadcasts per product) where that pads the group's channels by at most
// an eighth, else 1 (48 channels: three blocks of 16, not two of 32 with a third empty). Four vectors, with half
// as many positions per tile, measured 10-20% slower than two on 64-256 channels at batch 1.
template <typename T>
int block_vectors(int64_t channels) {
  constexpr int64_t L = Vec<T>::lanes;
  return ceil_div(channels, 2 * L) * 2 * L * 8 <= 9 * channels ? 2 : 1;
}

template <typename T>
int64_t block_channels(const ConvShape& s) {
  return block_vectors<T>(s.k_per_group()) * Vec<T>::lanes;
}

template <typename T>
int64_t blocks_per_group(const ConvShape& s) {
  return ceil_div(s.k_per_group(), block_channels<T>(s));
}

// Where the kernel reads the input: x itself, or a copy padded with zeros (and the prologue applied) so that
// every tap of every tile reads memory without a bounds test.
template <typename T>
struct Source {
  const T* data;
  int64_t row, slice, plane, image;  // strides: rows, depth slices, channel planes, images
};

// The input as the taps read it: x itself where every tap of every tile lands inside it, else a copy padded with
// zeros from -pad to the last slice, row and column any output reaches, the prologue applied. `Padding::fill`
// runs inside the caller's parallel region.
template <typename T>
struct Padding {
  const ConvShape& s;
  const T* x;
  const InputPrologue<T>& pro;
  int64_t Dp, Hp, Wp;
  Buffer<T> copy;  // empty where x is read in place

  Padding(const ConvShape& shape, const T* input, const InputPrologue<T>& prologue)
      : s(shape), x(input), pro(prologue), Dp((s.O - 1) * s.stride_d + (s.T - 1) * s.dil_d + 1),
        Hp((s.P - 1) * s.stride_h + (s.R - 1) * s.dil_h + 1), Wp((s.Q - 1) * s.stride_w + (s.S - 1) * s.dil_w + 1) {
    // (The trailing padding is implied by the output extents: without leading padding the taps may still read
    // past the input's end.)
    const bool inside = s.pad_d == 0 && s.pad_h == 0 && s.pad_w == 0 && Dp <= s.D && Hp <= s.H && Wp <= s.W;
    if (!inside || pro.scale) copy = alloc_buffer<T>(s.N * s.C * Dp * Hp * Wp);
  }

  Source<T> source() const {
    if (!copy) return {x, s.W, s.H * s.W, s.in_volume(), s.C * s.in_volume()};
    return {copy.get(), Wp, Hp * Wp, Dp * Hp * Wp, s.C * Dp * Hp * Wp};
  }

  void fill() {
    if (!copy) return;
    const int64_t first = std::min(s.pad_w, Wp), width = std::clamp(Wp - s.pad_w, int64_t(0), s.W);
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < s.N * s.C * Dp; ++pl) {  // one depth slice of one channel plane
      const int64_t c = pl / Dp % s.C, depth = pl % Dp - s.pad_d;
      for (int64_t i = 0; i < Hp; ++i) {
        T* d = copy.get() + (pl * Hp + i) * Wp;
        const int64_t h = i - s.pad_h;
        if (depth < 0 || depth >= s.D || h < 0 || h >= s.H) {
          for (int64_t j = 0; j < Wp; ++j) d[j] = T(0);
          continue;
        }
        // Plain loops: rows of a few dozen values, where memcpy and memset cost more as calls than as copies.
        const T* src = x + ((pl / Dp * s.D + depth) * s.H + h) * s.W;
        T* row = d + first;
        for (int64_t j = 0; j < first; ++j) d[j] = T(0);
        if (pro.scale)
          for (int64_t j = 0; j < width; ++j) row[j] = pro.apply(src[j], c);
        else
          for (int64_t j = 0; j < width; ++j) row[j] = src[j];
        for (int64_t j = first + width; j < Wp; ++j) d[j] = T(0);
      }
    }
  }
};

// One register tile: ROWS output rows of WIDTH positions (input reads `step` apart along a row, `row_step` between
// rows, from `in`) x KV vectors of channels, over the group's Cg channels and its taps; `wk` the block's packed
// weights. Writes tile[ROWS * WIDTH][KV * L], positions in row-major order.
template <typename T, int KV, int ROWS, int WIDTH>
void tile_kernel(const T* in, int64_t step, int64_t row_step, const int64_t* tap_offsets, int64_t taps, int64_t Cg,
                 int64_t plane, const T* wk, T* tile) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes, NP = ROWS * WIDTH;
  V acc[NP][KV];
  for (int j = 0; j < NP; ++j)
    for (int v = 0; v < KV; ++v) acc[j][v] = V{};
  for (int64_t c = 0; c < Cg; ++c, in += plane) {
    for (int64_t t = 0; t < taps; ++t, wk += KV * L) {
      const T* at = in + tap_offsets[t];
      V w[KV];
      for (int v = 0; v < KV; ++v) w[v] = Vec<T>::load(wk + v * L);
#pragma GCC unroll 12
      for (int r = 0; r < ROWS; ++r) {
#pragma GCC unroll 12
        for (int j = 0; j < WIDTH; ++j) {
          const V b = Vec<T>::broadcast(at[r * row_step + j * step]);
          for (int v = 0; v < KV; ++v) acc[r * WIDTH + j][v] += b * w[v];
        }
      }
    }
  }
  for (int j = 0; j < NP; ++j)
    for (int v = 0; v < KV; ++v) Vec<T>::store(tile + (j * KV + v) * L, acc[j][v]);
}

template <typename T, int KV>
using TileKernel = void (*)(const T*, int64_t, int64_t, const int64_t*, int64_t, int64_t, int64_t, const T*, T*);

// Positions per tile with KV vectors of channels.
template <int KV>
constexpr int tile_width() {
  return std::min(kMaxTileWidth, kAccumulators / KV);
}

// The kernel for `rows` rows of `width` positions (rows * width <= tile_width<KV>()): static switches from the run-time
// extents, over the widths and then the row counts.
template <typename T, int KV, int WIDTH, int ROWS = 1>
TileKernel<T, KV> rows_kernel_for(int rows) {
  if constexpr (ROWS < tile_width<KV>() / WIDTH) {
    if (rows != ROWS) return rows_kernel_for<T, KV, WIDTH, ROWS + 1>(rows);
  }
  return &tile_kernel<T, KV, ROWS, WIDTH>;
}

template <typename T, int KV, int WIDTH = 1>
TileKernel<T, KV> tile_kernel_for(int rows, int width) {
  if constexpr (WIDTH < tile_width<KV>()) {
    if (width != WIDTH) return tile_kernel_for<T, KV, WIDTH + 1>(rows, width);
  }
  return rows_kernel_for<T, KV, WIDTH>(rows);
}

// A tile's values (tile[i * ld + j]: position i, channel j) to the channel planes of y, with bias, residual and
// activation: lanes x lanes blocks transposed in registers, so that each channel's run of positions is one masked
// store; `at` is the first position of channel 0, channels `plane` apart.
template <typename T>
void store_tile(const T* tile, int64_t ld, int64_t positions, int64_t k_first, int64_t channels, int64_t at,
                int64_t plane, const T* bias, const T* residual, T* y, const Epilogue<T>& ep) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  for (int64_t i0 = 0; i0 < positions; i0 += L) {
    const int n = static_cast<int>(std::min(L, positions - i0));
    for (int64_t j0 = 0; j0 < channels; j0 += L) {
      V v[L];
      for (int64_t i = 0; i < L; ++i) v[i] = i < n ? Vec<T>::load(tile + (i0 + i) * ld + j0) : V{};
      Vec<T>::transpose(v);  // v[l]: channel j0 + l over the positions
      for (int64_t l = 0; l < std::min(L, channels - j0); ++l) {
        const int64_t k = j0 + l, o = at + k * plane + i0;
        V out = v[l] + Vec<T>::broadcast(bias ? bias[k_first + k] : T(0));
        if (residual) out += Vec<T>::load_first(residual + o, n);
        Vec<T>::store_first(y + o, ep.apply(out), n);
      }
    }
  }
}

template <typename T, int KV>
void forward_blocks(const ConvShape& s, Padding<T>& padding, const T* packed, const T* bias, const T* residual, T* y,
                    const Epilogue<T>& ep, int threads) {
  constexpr int64_t L = Vec<T>::lanes, KB = KV * L;
  constexpr int64_t width = tile_width<KV>();
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), taps = s.taps(), volume = s.out_volume();
  // Rows of at most half a tile go whole, several to a tile (a 4x4 map: two tiles of two rows, not four of 4
  // positions, whose products would not repay streaming the block's weights); longer ones in parts of balanced
  // widths (a 14-wide row as 7 + 7, not 12 + 2). A tile's rows lie in one depth slice, so its positions are
  // consecutive in y either way.
  const int64_t tile_rows = 2 * s.Q <= width ? width / s.Q : 1;
  const int64_t row_groups = ceil_div(s.P, tile_rows), per_row = tile_rows > 1 ? 1 : ceil_div(s.Q, width);
  const int64_t per_image = s.O * row_groups * per_row;
  const int64_t blocks = ceil_div(Kg, KB), tiles = s.N * per_image, tasks = s.groups * blocks * tiles;
  int64_t tap_offsets[64];
  std::vector<int64_t> many;
  int64_t* offsets = tap_offsets;
  if (taps > 64) {
    many.resize(taps);
    offsets = many.data();
  }
  const Source<T> src = padding.source();
  for (int64_t t = 0; t < s.T; ++t)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t c = 0; c < s.S; ++c)
        offsets[(t * s.R + r) * s.S + c] = t * s.dil_d * src.slice + r * s.dil_h * src.row + c * s.dil_w;
  // One parallel region for the padding and the tiles: a second one costs a wake-up of the team, microseconds
  // against kernels of tens of them.
#pragma omp parallel num_threads(threads)
  {
    padding.fill();  // (the loop's barrier: the input is complete)
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      // Blocks outermost: a thread's run of tasks streams one block of weights over many tiles.
      const int64_t gb = t / tiles, g = gb / blocks, b = gb % blocks, rest = t % tiles;
      const int64_t n = rest / per_image, o = rest / (row_groups * per_row) % s.O;
      const int64_t group = rest / per_row % row_groups, part = rest % per_row;
      const int64_t p0 = group * s.P / row_groups, rows = (group + 1) * s.P / row_groups - p0;
      const int64_t q0 = part * s.Q / per_row, np = (part + 1) * s.Q / per_row - q0;
      const T* in = src.data + n * src.image + g * Cg * src.plane + o * s.stride_d * src.slice +
                    p0 * s.stride_h * src.row + q0 * s.stride_w;
      alignas(64) T tile[kMaxTileWidth * KB];
      const T* weights = packed + (g * blocks + b) * Cg * taps * KB;
      tile_kernel_for<T, KV>(static_cast<int>(rows), static_cast<int>(np))(
          in, s.stride_w, s.stride_h * src.row, offsets, taps, Cg, src.plane, weights, tile);
      const int64_t k_first = g * Kg + b * KB;
      store_tile(tile, KB, rows * np, k_first, std::min(KB, Kg - b * KB),
                 (n * s.K + k_first) * volume + (o * s.P + p0) * s.Q + q0, volume, bias, residual, y, ep);
    }
  }
}

}  // namespace

template <typename T>
int64_t direct_weights_size(const ConvShape& s) {
  return s.groups * blocks_per_group<T>(s) * block_channels<T>(s) * s.crs();
}

template <typename T>
void pack_direct_weights(const ConvShape& s, const T* w, T* packed) {
  const int64_t KB = block_channels<T>(s), blocks = blocks_per_group<T>(s), Kg = s.k_per_group(), CRS = s.crs();
#pragma omp parallel for schedule(static) num_threads(threads_for(s.K * CRS * 64))
  for (int64_t gb = 0; gb < s.groups * blocks; ++gb) {
    const int64_t g = gb / blocks, b = gb % blocks;
    T* d = packed + gb * CRS * KB;
    for (int64_t crs = 0; crs < CRS; ++crs)
      for (int64_t j = 0; j < KB; ++j) {
        const int64_t k = b * KB + j;
        d[crs * KB + j] = k < Kg ? w[(g * Kg + k) * CRS + crs] : T(0);
      }
  }
}

template <typename T>
void conv2d_forward_direct(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                           const T* residual, T* y, const Epilogue<T>& ep, const InputPrologue<T>& pro) {
  const int threads = threads_for(s.N * s.K * s.out_volume() * s.crs());
  Buffer<T> own_weights;
  if (!packed) {
    own_weights = alloc_buffer<T>(direct_weights_size<T>(s));
    pack_direct_weights(s, w, own_weights.get());
    packed = own_weights.get();
  }
  Padding<T> padding(s, x, pro);
  switch (block_vectors<T>(s.k_per_group())) {
    case 2: return forward_blocks<T, 2>(s, padding, packed, bias, residual, y, ep, threads);
    default: return forward_blocks<T, 1>(s, padding, packed, bias, residual, y, ep, threads);
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                                   \
  template int64_t direct_weights_size<T>(const ConvShape&);                                                   \
  template void pack_direct_weights<T>(const ConvShape&, const T*, T*);                                        \
  template void conv2d_forward_direct<T>(const ConvShape&, const T*, const T*, const T*, const T*, const T*, T*, \
                                         const Epilogue<T>&, const InputPrologue<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

#include "conv2d_weight_panels.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "im2col.h"
#include "threading.h"

namespace medkern::cpu {
namespace {

template <typename T>
int64_t padded_channels(const ConvShape& s) {
  return ceil_div(s.k_per_group(), int64_t(GemmTile<T>::NR)) * GemmTile<T>::NR;
}

// Panel jp of group g over reduction rows [k0, k0 + kc): in the layout gemm_packed's B blocks have (k-major
// rows of NR channels), blocks of KC rows one after another, groups one after another.
template <typename T>
int64_t panel_offset(const ConvShape& s, int64_t g, int64_t k0, int64_t kc, int64_t jp) {
  const int64_t Npad = padded_channels<T>(s);
  return g * Npad * s.crs() + Npad * k0 + jp * GemmTile<T>::NR * kc;
}

template <typename T>
void pack_panel(const ConvShape& s, const T* w, int64_t g, int64_t jp, T* packed) {
  constexpr int64_t NR = GemmTile<T>::NR, KC = GemmTile<T>::KC;
  const int64_t Kg = s.k_per_group(), CRS = s.crs();
  for (int64_t k0 = 0; k0 < CRS; k0 += KC) {
    const int64_t kc = std::min(KC, CRS - k0);
    T* d = packed + panel_offset<T>(s, g, k0, kc, jp);
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t ch = jp * NR + j;
      const T* src = w + (g * Kg + ch) * CRS + k0;
      for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = ch < Kg ? src[k] : T(0);
    }
  }
}

// The im2col rows [m0, m0 + rows) of one group (output positions of the batch), gathered into GEMM A panels
// (MR rows, k-major) with the input prologue applied; the padding stays zero, as it pads the input as the
// convolution reads it.
template <typename T>
struct RowBlock {
  static constexpr int64_t MR = GemmTile<T>::MR;
  int64_t RS, HW, c_first, m_panels, ld;
  std::vector<int32_t> source;    // source[rs * ld + row]: the offset read, -1 in the padding and past the rows
  std::vector<uint8_t> adjacent;  // adjacent[rs * m_panels + ip]: the panel's MR offsets are consecutive

  RowBlock(const ConvShape& s, const TapIndex& taps, int64_t g, int64_t m0, int64_t rows)
      : RS(s.R * s.S), HW(s.H * s.W), c_first(g * s.c_per_group()), m_panels(ceil_div(rows, MR)), ld(m_panels * MR),
        source(static_cast<size_t>(RS * ld), -1), adjacent(static_cast<size_t>(RS * m_panels)) {
    for (int64_t rs = 0; rs < RS; ++rs) {
      int32_t* src = source.data() + rs * ld;
      fill_sources(taps.row(rs), m0, rows, s.P * s.Q, c_first * HW, s.C * HW, src);
      // Stride 1 inside the map: MR positions read MR adjacent inputs, one copy instead of MR gathers. (Every
      // offset is compared: across a row's end the padding can sit between adjacent offsets.)
      for (int64_t ip = 0; ip < m_panels; ++ip) {
        const int32_t* p = src + ip * MR;
        bool consecutive = p[0] >= 0;
        for (int64_t i = 1; consecutive && i < MR; ++i) consecutive = p[i] == p[0] + i;
        adjacent[rs * m_panels + ip] = consecutive;
      }
    }
  }

  // Panel ip over reduction rows [k0, k0 + kc) into d (kc x MR).
  void pack(const T* x, int64_t k0, int64_t kc, int64_t ip, const InputPrologue<T>& pro, T* d) const {
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t crs = k0 + k, rs = crs % RS, c = c_first + crs / RS;
      const T* plane = x + (crs / RS) * HW;
      const int32_t* src = source.data() + rs * ld + ip * MR;
      T* out = d + k * MR;
      if (adjacent[rs * m_panels + ip]) {
        const T* in = plane + src[0];
        if (pro.scale)
          for (int64_t i = 0; i < MR; ++i) out[i] = pro.apply(in[i], c);
        else
          std::memcpy(out, in, MR * sizeof(T));
      } else if (pro.scale) {
        for (int64_t i = 0; i < MR; ++i) out[i] = src[i] >= 0 ? pro.apply(plane[src[i]], c) : T(0);
      } else {
        for (int64_t i = 0; i < MR; ++i) out[i] = src[i] >= 0 ? plane[src[i]] : T(0);
      }
    }
  }
};

// C (rows m0.. of the batch's positions x `channels` output channels from k_first, ldc apart) to y's channel
// planes, with bias, residual and the activation: L x L blocks transposed in registers where L rows lie in one
// image, the rest element by element (in the same order of additions, so both give the same bits).
template <typename T>
void store_outputs(const ConvShape& s, const T* c, int64_t ldc, int64_t m0, int64_t rows, int64_t k_first,
                   int64_t channels, const T* bias, const T* residual, T* y, const Epilogue<T>& ep) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t PQ = s.P * s.Q;
  auto one = [&](int64_t r, int64_t j) {
    const int64_t k = k_first + j, at = ((m0 + r) / PQ * s.K + k) * PQ + (m0 + r) % PQ;
    y[at] = ep.apply(c[r * ldc + j] + (bias ? bias[k] : T(0)) + (residual ? residual[at] : T(0)));
  };
  int64_t r = 0;
  for (; r + L <= rows; r += L) {
    const int64_t n = (m0 + r) / PQ, p = (m0 + r) % PQ;
    int64_t j = 0;
    if (p + L <= PQ) {
      for (; j + L <= channels; j += L) {
        V v[L];
        for (int64_t i = 0; i < L; ++i) v[i] = Vec<T>::load(c + (r + i) * ldc + j);
        Vec<T>::transpose(v);  // v[l]: channel j + l over the L rows
        for (int64_t l = 0; l < L; ++l) {
          const int64_t k = k_first + j + l, at = (n * s.K + k) * PQ + p;
          V o = v[l] + Vec<T>::broadcast(bias ? bias[k] : T(0));
          if (residual) o += Vec<T>::load(residual + at);
          Vec<T>::store(y + at, ep.apply(o));
        }
      }
    }
    for (; j < channels; ++j)
      for (int64_t i = 0; i < L; ++i) one(r + i, j);
  }
  for (; r < rows; ++r)
    for (int64_t j = 0; j < channels; ++j) one(r, j);
}

// Output positions per task: the A block (rows x KC) and the task's C block stay in L2, and the weights,
// the streamed operand, are read once per block of rows.
constexpr int64_t kRowsPerTask = 96;
// Up to this many positions the weights outweigh the im2col rows.
constexpr int64_t kMaxRowsToSplitChannels = 128;

}  // namespace

template <typename T>
int64_t weight_panels_size(const ConvShape& s) {
  return s.groups * padded_channels<T>(s) * s.crs();
}

template <typename T>
void pack_weight_panels(const ConvShape& s, const T* w, T* packed) {
  const int64_t panels = padded_channels<T>(s) / GemmTile<T>::NR;
#pragma omp parallel for schedule(static) num_threads(threads_for(s.K * s.crs() * 64))
  for (int64_t t = 0; t < s.groups * panels; ++t) pack_panel(s, w, t / panels, t % panels, packed);
}

template <typename T>
void conv2d_forward_weight_panels(const ConvShape& s, const T* x, const T* w, const T* packed, const T* bias,
                                  const T* residual, T* y, const Epilogue<T>& ep, const InputPrologue<T>& pro) {
  constexpr int64_t NR = GemmTile<T>::NR, MR = GemmTile<T>::MR, KC = GemmTile<T>::KC;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.P * s.Q, HW = s.H * s.W;
  const int64_t RS = s.R * s.S, M = s.N * PQ, panels = padded_channels<T>(s) / NR;
  const int threads = threads_for(s.N * s.K * PQ * CRS);
  Buffer<T> own;
  if (!packed) {
    own = alloc_buffer<T>(weight_panels_size<T>(s));
    pack_weight_panels(s, w, own.get());
    packed = own.get();
  }
  // Few positions (weight-bound): the threads split the channel panels, so each streams its share of the
  // weights once; with fewer panels than threads (32 channels: one panel) the threads left over split the
  // rows. Otherwise row blocks of equal size, a whole number of rounds of the threads (a last block of 4 rows
  // beside two of 96 left a thread idle a third of the time).
  const bool split_channels = M <= kMaxRowsToSplitChannels;
  const int64_t parts = split_channels && s.groups < threads ? std::min<int64_t>(threads, panels) : 1;
  const int64_t row_blocks =
      split_channels ? std::min(std::max<int64_t>(threads / (parts * s.groups), 1), ceil_div(M, MR))
                     : ceil_div(ceil_div(M, kRowsPerTask) * s.groups, int64_t(threads)) * threads / s.groups;
  const int64_t rows_per_task = ceil_div(ceil_div(M, std::max<int64_t>(row_blocks, 1)), MR) * MR;
  const int64_t part_panels = ceil_div(panels, parts), tasks = s.groups * row_blocks * parts;
  const TapIndex taps(s);
  // With the channels split, the threads share one A: packed once, in parallel, before the products.
  const bool shared_a = row_blocks == 1 && parts > 1;
  std::vector<RowBlock<T>> shared_rows;
  Buffer<T> shared_a_buf;
  if (shared_a) {
    for (int64_t g = 0; g < s.groups; ++g) shared_rows.emplace_back(s, taps, g, 0, M);
    shared_a_buf = alloc_buffer<T>(s.groups * shared_rows[0].ld * CRS);
  }
  const int64_t k_blocks = ceil_div(CRS, KC);
#pragma omp parallel num_threads(threads)
  {
    if (shared_a) {
      const int64_t m_panels = shared_rows[0].m_panels, ld = shared_rows[0].ld;
#pragma omp for schedule(static)
      for (int64_t t = 0; t < s.groups * k_blocks * m_panels; ++t) {
        const int64_t g = t / (k_blocks * m_panels), k0 = t / m_panels % k_blocks * KC, ip = t % m_panels;
        const int64_t kc = std::min(KC, CRS - k0);
        shared_rows[g].pack(x, k0, kc, ip, pro, shared_a_buf.get() + (g * CRS + k0) * ld + ip * MR * kc);
      }
      // (the loop's barrier: A is complete)
    }
    const int64_t ldc = part_panels * NR;
    Buffer<T> a_buf = alloc_buffer<T>(shared_a ? 0 : rows_per_task * KC);
    Buffer<T> c_buf = alloc_buffer<T>(rows_per_task * ldc);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t part = t % parts, rb = t / parts % row_blocks, g = t / parts / row_blocks;
      const int64_t jp0 = part * part_panels, jp1 = std::min(panels, jp0 + part_panels);
      const int64_t m0 = rb * rows_per_task, rows = std::min(rows_per_task, M - m0), m_panels = ceil_div(rows, MR);
      if (jp0 >= jp1 || rows <= 0) continue;
      std::optional<RowBlock<T>> own_rows;
      if (!shared_a) own_rows.emplace(s, taps, g, m0, rows);
      for (int64_t k0 = 0; k0 < CRS; k0 += KC) {
        const int64_t kc = std::min(KC, CRS - k0);
        const T* a_block;
        if (shared_a) {
          a_block = shared_a_buf.get() + (g * CRS + k0) * shared_rows[g].ld;
        } else {
          for (int64_t ip = 0; ip < m_panels; ++ip) own_rows->pack(x, k0, kc, ip, pro, a_buf.get() + ip * MR * kc);
          a_block = a_buf.get();
        }
        for (int64_t jp = jp0; jp < jp1; ++jp) {
          const T* b = packed + panel_offset<T>(s, g, k0, kc, jp);
          for (int64_t ip = 0; ip < m_panels; ++ip)
            micro_kernel<T>(kc, a_block + ip * MR * kc, b, c_buf.get() + ip * MR * ldc + (jp - jp0) * NR, ldc, MR, NR,
                            nullptr, k0 > 0);
        }
      }
      const int64_t ch0 = jp0 * NR;
      store_outputs(s, c_buf.get(), ldc, m0, rows, g * Kg + ch0, std::min(Kg, jp1 * NR) - ch0, bias, residual, y, ep);
    }
  }
}

#define MEDKERN_INSTANTIATE(T)                                                                              \
  template int64_t weight_panels_size<T>(const ConvShape&);                                                 \
  template void pack_weight_panels<T>(const ConvShape&, const T*, T*);                                      \
  template void conv2d_forward_weight_panels<T>(const ConvShape&, const T*, const T*, const T*, const T*,   \
                                                const T*, T*, const Epilogue<T>&, const InputPrologue<T>&);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

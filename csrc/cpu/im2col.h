#pragma once
// Rows of the im2col matrix of one image, produced on demand while packing GEMM panels (and their
// adjoint, col2im, for grad-input). Row `crs` of the matrix is the input volume of channel c seen through
// kernel tap (t, r, s); column p is output position p = (od*P + oh)*Q + ow. A 2-d shape is the depth-1 case
// (t = od = 0), so one walk serves both.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/conv_params.h"

namespace medkern::cpu {

// Walks output positions [p0, p0+n) of im2col row `crs` in runs that lie in one output row. For each run
// fn(pos, len, in_off, in_stride) gets the run's start within [0, n) and, when the run reads the input, the
// offset of its first element in the channel's volume (stride in_stride between elements); runs that fall
// in the padding are reported with in_off = -1.
template <class Fn>
inline void for_each_im2col_run(const ConvShape& s, int64_t crs, int64_t p0, int64_t n, Fn&& fn) {
  const int64_t tap = crs % s.taps(), t = tap / (s.R * s.S), r = (tap / s.S) % s.R, sx = tap % s.S;
  const int64_t off = sx * s.dil_w - s.pad_w;  // iw = ow * stride_w + off
  const int64_t ow_lo = std::min<int64_t>(s.Q, off >= 0 ? 0 : (-off + s.stride_w - 1) / s.stride_w);
  const int64_t ow_hi = std::min<int64_t>(s.Q, s.W - 1 - off < 0 ? 0 : (s.W - 1 - off) / s.stride_w + 1);
  const int64_t PQ = s.P * s.Q;
  int64_t od = p0 / PQ, oh = p0 % PQ / s.Q, ow = p0 % s.Q, pos = 0;
  while (pos < n) {
    const int64_t len = std::min(s.Q - ow, n - pos), end = ow + len;
    const int64_t id = conv_in_coord(od, t, s.stride_d, s.pad_d, s.dil_d);
    const int64_t ih = conv_in_coord(oh, r, s.stride_h, s.pad_h, s.dil_h);
    if (id < 0 || id >= s.D || ih < 0 || ih >= s.H || ow_lo >= ow_hi) {
      fn(pos, len, int64_t(-1), int64_t(0));
    } else {
      const int64_t row = (id * s.H + ih) * s.W;
      const int64_t a = std::clamp(ow_lo, ow, end), b = std::clamp(ow_hi, a, end);
      if (a > ow) fn(pos, a - ow, int64_t(-1), int64_t(0));
      if (b > a) fn(pos + (a - ow), b - a, row + a * s.stride_w + off, s.stride_w);
      if (end > b) fn(pos + (b - ow), end - b, int64_t(-1), int64_t(0));
    }
    pos += len;
    ow = 0;
    if (++oh == s.P) oh = 0, ++od;
  }
}

// dst[0..n) = im2col row crs at positions [p0, p0+n); x_g points at the group's first channel.
template <typename T>
inline void im2col_row(const T* x_g, const ConvShape& s, int64_t crs, int64_t p0, int64_t n, T* dst) {
  const T* plane = x_g + (crs / s.taps()) * s.in_volume();
  for_each_im2col_run(s, crs, p0, n, [&](int64_t pos, int64_t len, int64_t in_off, int64_t stride) {
    T* d = dst + pos;
    if (in_off < 0) {
      std::fill(d, d + len, T(0));
    } else if (stride == 1) {
      std::memcpy(d, plane + in_off, len * sizeof(T));
    } else {
      const T* src = plane + in_off;
      for (int64_t j = 0; j < len; ++j) d[j] = src[j * stride];
    }
  });
}

// Row k (of kc) of a GEMM B block in packed-panel layout (NR-column panels, k-major) = im2col row crs
// at positions [p0, p0+n), zero up to the last panel's edge: im2col_row and scatter_row_to_panels in
// one pass, with plain loops (most runs are shorter than a panel, too short for a library call).
template <int NR, typename T>
inline void im2col_row_to_panels(const T* x_g, const ConvShape& s, int64_t crs, int64_t p0, int64_t n,
                                 int64_t k, int64_t kc, T* dst) {
  const T* plane = x_g + (crs / s.taps()) * s.in_volume();
  auto put = [&](int64_t pos, int64_t len, const T* src, int64_t stride) {
    while (len > 0) {
      const int64_t off = pos % NR, run = std::min<int64_t>(len, NR - off);
      T* d = dst + (pos / NR) * NR * kc + k * NR + off;
      if (!src) {
        for (int64_t j = 0; j < run; ++j) d[j] = T(0);
      } else if (stride == 1) {
        for (int64_t j = 0; j < run; ++j) d[j] = src[j];
        src += run;
      } else {
        for (int64_t j = 0; j < run; ++j) d[j] = src[j * stride];
        src += run * stride;
      }
      pos += run;
      len -= run;
    }
  };
  for_each_im2col_run(s, crs, p0, n, [&](int64_t pos, int64_t len, int64_t in_off, int64_t stride) {
    put(pos, len, in_off < 0 ? nullptr : plane + in_off, stride);
  });
  const int64_t edge = (n + NR - 1) / NR * NR;
  if (edge > n) put(n, edge - n, nullptr, 0);
}

// Small output maps (7x7, 4x4: deep layers of small-image CNNs and GAN critics) put the GEMM columns of a
// whole batch side by side, and their im2col runs are a few elements long: walking them per (row, image)
// cost more than the arithmetic. Instead the offset within a channel's volume that each (kernel tap, output
// position) reads is tabulated once per call, -1 in the padding, and every row of every image is a gather
// through it.
struct TapIndex {
  int64_t RS = 0, PQ = 0;  // taps and output positions (of a volume: T*R*S and O*P*Q)
  std::vector<int32_t> at;  // at[tap * PQ + p]
  TapIndex() = default;
  explicit TapIndex(const ConvShape& s) : RS(s.taps()), PQ(s.out_volume()), at(static_cast<size_t>(RS * PQ)) {
    for (int64_t tap = 0; tap < RS; ++tap)
      for (int64_t p = 0; p < PQ; ++p) {
        const int64_t id = conv_in_coord(p / (s.P * s.Q), tap / (s.R * s.S), s.stride_d, s.pad_d, s.dil_d);
        const int64_t ih = conv_in_coord(p / s.Q % s.P, tap / s.S % s.R, s.stride_h, s.pad_h, s.dil_h);
        const int64_t iw = conv_in_coord(p % s.Q, tap % s.S, s.stride_w, s.pad_w, s.dil_w);
        const bool inside = id >= 0 && id < s.D && ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
        at[tap * PQ + p] = inside ? static_cast<int32_t>((id * s.H + ih) * s.W + iw) : -1;
      }
  }
  // Offsets for kernel tap `tap` (im2col rows crs with crs % RS == tap), from output position 0.
  const int32_t* row(int64_t tap) const { return at.data() + tap * PQ; }
};

// The input offsets that one kernel tap (offsets `id` within a plane, from TapIndex) reads at batch
// positions j0 .. j0+n (j = image * PQ + position): image * image_stride + first + id, or -1 in the padding.
inline void fill_sources(const int32_t* id, int64_t j0, int64_t n, int64_t PQ, int64_t first, int64_t image_stride,
                         int32_t* out) {
  int64_t p = j0 % PQ, base = j0 / PQ * image_stride + first;
  for (int64_t j = 0; j < n; ++j) {
    out[j] = id[p] < 0 ? -1 : static_cast<int32_t>(base + id[p]);
    if (++p == PQ) p = 0, base += image_stride;
  }
}

// dst[j] = base[at[j]] (0 where at[j] < 0) for j < n.
template <typename T>
inline void gather_row(const T* __restrict base, const int32_t* __restrict at, int64_t n, T* __restrict dst) {
  for (int64_t j = 0; j < n; ++j) dst[j] = at[j] >= 0 ? base[at[j]] : T(0);
}

// The adjoint: adds src[0..n) into the input positions that im2col row crs reads at [p0, p0+n).
template <typename T>
inline void col2im_row_add(T* dx_g, const ConvShape& s, int64_t crs, int64_t p0, int64_t n, const T* src) {
  T* plane = dx_g + (crs / s.taps()) * s.in_volume();
  for_each_im2col_run(s, crs, p0, n, [&](int64_t pos, int64_t len, int64_t in_off, int64_t stride) {
    if (in_off < 0) return;
    T* d = plane + in_off;
    const T* v = src + pos;
    for (int64_t j = 0; j < len; ++j) d[j * stride] += v[j];
  });
}

}  // namespace medkern::cpu

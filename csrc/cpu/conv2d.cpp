// Convolution on the CPU as implicit GEMM: im2col rows are produced while packing B panels, so no im2col
// tensor is ever materialised, and the register-blocked micro-kernel of gemm.h does the arithmetic. The GEMM
// paths walk the N-d geometry (PQ below is every output position of an image, O*P*Q for a volume, and RS
// every kernel tap), so they serve 3-d convolutions as well; the other paths are 2-d only.
//   forward      y[n,g]  (Kg x PQ)  = W[g] (Kg x CRS) * col(x[n,g]) (CRS x PQ)          + bias
//   grad-input   stride 1: a forward conv of dy with the flipped, transposed kernel; larger strides
//                (dilation 1): one such conv per stride phase with a sub-kernel; otherwise
//                col(dx[n,g]) = W[g]^T * dy[n,g], scattered back by col2im
//   grad-weight  dW[g] (Kg x CRS) = sum_n dy[n,g] (Kg x PQ) * col(x[n,g])^T (PQ x CRS)
// The other paths live in files of their own; conv_plan.h lists them all, and its planners choose among them.
#include "conv2d.h"

#include <omp.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "conv2d_few_outputs.h"
#include "conv2d_forward_shifted.h"
#include "conv2d_grad_input_shifted.h"
#include "conv2d_grad_weight_shifted.h"
#include "conv_grad_weight_winograd.h"
#include "conv2d_direct.h"
#include "conv2d_weight_panels.h"
#include "conv2d_winograd_panels.h"
#include "conv2d_winograd.h"
#include "conv3d_winograd.h"
#include "conv_plan.h"
#include "gemm.h"
#include "im2col.h"
#include "threading.h"

namespace medkern::cpu {
namespace {

// Column-block width for a GEMM whose N dimension is `cols` per image, with `outer` independent
// images: big enough that a B block amortises packing (and stays in L2), small enough that every
// thread gets an even share of blocks.
template <typename T>
int64_t column_block(int64_t cols, int64_t outer, int64_t max_block) {
  const int64_t NR = GemmTile<T>::NR, threads = omp_get_max_threads();
  int64_t blocks = ceil_div(cols, max_block);
  // Too few tasks for the threads, or an uneven last round: split images into more blocks.
  while (blocks < cols / NR && (outer * blocks) % threads != 0 && outer * blocks < 8 * threads) ++blocks;
  return ceil_div(ceil_div(cols, blocks), NR) * NR;
}

// Every group's weights packed as GEMM A operands (see pack_a), group g's at g * packed_a_size(M, Kd).
// Called inside a parallel region, the threads share the panels (packed serially, they left the other
// thread idle for a tenth of a small layer's time), and the loop's barrier makes them ready for all.
template <typename T>
void pack_weights_per_group(const T* w, int64_t groups, int64_t M, int64_t Kd, int64_t rs, int64_t cs,
                            int64_t group_stride, T* packed) {
  const int64_t size = packed_a_size<T>(M, Kd), panels = ceil_div(M, GemmTile<T>::MR);
#pragma omp for schedule(static)
  for (int64_t t = 0; t < groups * panels; ++t)
    pack_a_panel(w + (t / panels) * group_stride, rs, cs, M, Kd, t % panels, packed + (t / panels) * size);
}

// Small output maps (the deep layers of small-image CNNs and GANs) would leave much of each image's last
// NR-column panel empty, pack B a few dozen columns at a time, and walk im2col runs a few elements long: the
// across-images paths run their GEMM columns over (image, position) of the whole batch instead, filled by
// gathers.
// Forward with GEMM columns spanning images: C goes to a scratch block, then to each image's rows of y.
// Per column block, the input offset that every (kernel tap, column) reads is tabulated once (image
// offset plus the tap's plane offset, -1 in the padding); a B row is then one gather over the block for
// whichever channel the row belongs to.
template <typename T>
void forward_across_images(const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                           const Epilogue<T>& ep) {
  constexpr int64_t NR = GemmTile<T>::NR, MR = GemmTile<T>::MR;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.out_volume(), HW = s.in_volume();
  const int64_t RS = s.taps(), cols = s.N * PQ;
  const int threads = threads_for(s.N * s.K * PQ * CRS);
  const int64_t nc = column_block<T>(cols, s.groups, 512);
  const int64_t col_blocks = ceil_div(cols, nc), blocks = s.groups * col_blocks;
  // Fewer column blocks than threads (batch 1, a map of a few dozen positions): the threads split each
  // block's output channels instead, each with the W rows of its part and its own copy of the block's B.
  const int64_t parts = blocks < threads ? std::min<int64_t>(threads, ceil_div(Kg, MR)) : 1;
  const int64_t part_rows = ceil_div(ceil_div(Kg, MR), parts) * MR, a_size = packed_a_size<T>(part_rows, CRS);
  const Buffer<T> a_packed = alloc_buffer<T>(s.groups * parts * a_size);
  const int64_t part_panels = part_rows / MR;
  const TapIndex taps(s);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < s.groups * parts * part_panels; ++t) {
      const int64_t gp = t / part_panels, g = gp / parts, m0 = std::min(Kg, gp % parts * part_rows);
      const int64_t rows = std::min(part_rows, Kg - m0);
      if (rows > 0 && t % part_panels < ceil_div(rows, MR))
        pack_a_panel(w + (g * Kg + m0) * CRS, CRS, int64_t(1), rows, CRS, t % part_panels, a_packed.get() + gp * a_size);
    }
    Buffer<T> b_buf = alloc_buffer<T>(packed_b_size<T>(nc));
    Buffer<T> c_buf = alloc_buffer<T>(part_rows * nc);
    std::vector<int32_t> source(static_cast<size_t>(RS * nc));  // source[rs * nc + col]
#pragma omp for schedule(static)
    for (int64_t t = 0; t < blocks * parts; ++t) {
      const int64_t part = t % parts, g = t / parts / col_blocks, j0 = (t / parts % col_blocks) * nc;
      const int64_t ncur = std::min(nc, cols - j0), m0 = std::min(Kg, part * part_rows);
      const int64_t rows = std::min(part_rows, Kg - m0);
      if (rows <= 0) continue;
      for (int64_t rs = 0; rs < RS; ++rs)
        fill_sources(taps.row(rs), j0, ncur, PQ, (g * Cg) * HW, s.C * HW, source.data() + rs * nc);
      auto pack_b = [&](int64_t k0, int64_t kc, T* dst) {
        for (int64_t k = 0; k < kc; ++k) {
          const int64_t crs = k0 + k;
          const T* x_c = x + (crs / RS) * HW;
          const int32_t* src = source.data() + (crs % RS) * nc;
          for (int64_t j = 0; j < ncur; j += NR) gather_row(x_c, src + j, std::min(NR, ncur - j), dst + j * kc + k * NR);
          T* last = dst + (ncur / NR) * NR * kc + k * NR;  // the last panel, past the block's columns
          for (int64_t j = ncur % NR; ncur % NR && j < NR; ++j) last[j] = T(0);
        }
      };
      gemm_packed<T>(rows, ncur, CRS, a_packed.get() + (g * parts + part) * a_size, pack_b, b_buf.get(), c_buf.get(),
                     nc, bias ? bias + g * Kg + m0 : nullptr, false, Epilogue<T>{ep.act, ep.slope, false});
      for (int64_t j = j0; j < j0 + ncur;) {  // each image's share of the block to its rows of y
        const int64_t n = j / PQ, p = j % PQ, len = std::min(PQ - p, j0 + ncur - j);
        for (int64_t k = 0; k < rows; ++k)
          std::memcpy(y + (n * s.K + g * Kg + m0 + k) * PQ + p, c_buf.get() + k * nc + (j - j0), len * sizeof(T));
        j += len;
      }
    }
  }
}

template <typename T>
void forward_gemm(const ConvShape& s, const T* x, const T* w, const T* bias, T* y, const Epilogue<T>& ep) {
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.out_volume(), HW = s.in_volume();
  const int64_t a_size = packed_a_size<T>(Kg, CRS);
  const Buffer<T> a_packed = alloc_buffer<T>(s.groups * a_size);
  const int64_t nc = column_block<T>(PQ, s.N * s.groups, 512);
  const int64_t col_blocks = ceil_div(PQ, nc), tasks = s.N * s.groups * col_blocks;
#pragma omp parallel num_threads(threads_for(s.N * s.K * PQ * CRS))
  {
    pack_weights_per_group(w, s.groups, Kg, CRS, CRS, int64_t(1), Kg * CRS, a_packed.get());
    Buffer<T> b_buf = alloc_buffer<T>(packed_b_size<T>(nc));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t n = t / (s.groups * col_blocks), g = (t / col_blocks) % s.groups, j0 = (t % col_blocks) * nc;
      const int64_t ncur = std::min(nc, PQ - j0);
      const T* x_g = x + (n * s.C + g * Cg) * HW;
      auto pack_b = [&](int64_t k0, int64_t kc, T* dst) {
        for (int64_t k = 0; k < kc; ++k) im2col_row_to_panels<GemmTile<T>::NR>(x_g, s, k0 + k, j0, ncur, k, kc, dst);
      };
      gemm_packed<T>(Kg, ncur, CRS, a_packed.get() + g * a_size, pack_b, b_buf.get(),
                     y + (n * s.K + g * Kg) * PQ + j0, PQ, bias ? bias + g * Kg : nullptr, false, ep);
    }
  }
}

// Runs a forward plan (plans have no sub-plans in this direction). `packed`: the weights prepacked for this
// path, or nullptr; `residual` is added before the activation by the paths that take one (reads_residual), `pro`
// applied to x by the one that gathers its input (gemm_weight_panels).
template <typename T>
void run_forward(ConvPath path, const ConvShape& s, const T* x, const T* w, const T* bias, T* y,
                 const Epilogue<T>& ep = {}, const T* packed = nullptr, const T* residual = nullptr,
                 const InputPrologue<T>& pro = {}) {
  switch (path) {
    case ConvPath::forward_direct: return conv2d_forward_direct(s, x, w, packed, bias, residual, y, ep, pro);
    case ConvPath::winograd_f2x3_panels:
      return conv2d_forward_winograd_panels(s, x, w, packed, bias, residual, y, ep);
    case ConvPath::winograd_f2x3:
    case ConvPath::winograd_f4x3:
    case ConvPath::winograd_f4x4_phases:
    case ConvPath::winograd_f2x2_phases: return conv2d_forward_winograd(path, s, x, w, bias, y, ep);
    case ConvPath::winograd3d_f2x3: return conv3d_forward_winograd(s, x, w, packed, bias, y, ep);
    case ConvPath::few_outputs: return conv2d_forward_few_outputs(s, x, w, bias, y, ep);
    case ConvPath::forward_grid: return conv2d_forward_shifted(s, x, w, bias, y, ep);
    case ConvPath::forward_weight_panels:
      return conv2d_forward_weight_panels(s, x, w, packed, bias, residual, y, ep, pro);
    case ConvPath::forward_gemm_across_images: return forward_across_images(s, x, w, bias, y, ep);
    case ConvPath::forward_gemm: return forward_gemm(s, x, w, bias, y, ep);
    default: throw std::logic_error("run_forward: not a forward path");
  }
}

// The paths whose epilogue adds a residual before the activation.
bool reads_residual(ConvPath p) {
  return p == ConvPath::forward_weight_panels || p == ConvPath::winograd_f2x3_panels || p == ConvPath::forward_direct;
}

// The paths that apply the input prologue as they gather (or pad) their input.
bool reads_prologue(ConvPath p) { return p == ConvPath::forward_weight_panels || p == ConvPath::forward_direct; }

void check_packable(ConvPath layout, const ConvShape& s) {
  if (layout == ConvPath::winograd3d_f2x3) {
    if (s.T != 3 || s.R != 3 || s.S != 3 || s.groups != 1)
      throw std::invalid_argument("packed_layout: winograd3d_f2x3 packs 3x3x3 kernels of one group");
    return;
  }
  if (layout == ConvPath::forward_direct) return;
  if (s.T != 1)
    throw std::invalid_argument("packed_layout: a volume's kernel packs only for 'direct' and 'winograd3d_f2x3'");
  if (layout == ConvPath::forward_weight_panels) return;
  if (layout == ConvPath::winograd_f2x3_panels) {
    if (s.R != 3 || s.S != 3 || s.groups != 1)
      throw std::invalid_argument("packed_layout: winograd_f2x3_panels packs 3x3 kernels of one group");
    return;
  }
  throw std::invalid_argument(
      "packed_layout: expected 'direct', 'gemm_weight_panels', 'winograd_f2x3_panels' or 'winograd3d_f2x3' (the paths "
      "that read packed weights)");
}

// The one forward path in a plan's sub-plan set (as_forward has exactly one).
ConvPath single_sub(const ConvPlan& plan) {
  for (int p = 0; p < static_cast<int>(ConvPath::count); ++p)
    if (plan.subs == (1u << p)) return static_cast<ConvPath>(p);
  throw std::logic_error("conv plan: expected exactly one sub-plan");
}

template <typename T>
constexpr bool is_double = sizeof(T) == sizeof(double);

// as_forward (conv_plan.h): the flipped, channel-transposed kernel, then the sub-plan's forward.
template <typename T>
void grad_input_as_forward(const ConvPlan& plan, const ConvArgs<T>& a) {
  const ConvShape& s = a.s;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), RS = s.taps();
  std::vector<T> wt(s.K * Cg * RS);
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t k = 0; k < Kg; ++k)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t rs = 0; rs < RS; ++rs)
          wt[((g * Cg + c) * Kg + k) * RS + (RS - 1 - rs)] = a.w[((g * Kg + k) * Cg + c) * RS + rs];
  run_forward<T>(single_sub(plan), as_forward_shape(s), a.dy, wt.data(), nullptr, a.dx);
}

// phases (conv_plan.h): one forward convolution per stride phase, each a dense GEMM with the whole
// reduction, where GEMM + col2im writes a CRS x PQ column buffer and adds it back element by element.
template <typename T>
void grad_input_by_phases(const ConvPlan& plan, const ConvArgs<T>& a) {
  const ConvShape& s = a.s;
  std::vector<StridePhase> rows(s.stride_h), cols(s.stride_w);
  for (int64_t p = 0; p < s.stride_h; ++p) rows[p] = stride_phase(p, s.stride_h, s.pad_h, s.R, s.H);
  for (int64_t p = 0; p < s.stride_w; ++p) cols[p] = stride_phase(p, s.stride_w, s.pad_w, s.S, s.W);
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), HW = s.H * s.W;
  std::vector<T> wt, out;
  for (int64_t ph = 0; ph < s.stride_h; ++ph) {
    for (int64_t pw = 0; pw < s.stride_w; ++pw) {
      const StridePhase& fr = rows[ph];
      const StridePhase& fc = cols[pw];
      if (fr.count == 0 || fc.count == 0) continue;
      const int64_t i0 = s.stride_h * fr.first + ph - s.pad_h, j0 = s.stride_w * fc.first + pw - s.pad_w;
      const int64_t area = fr.count * fc.count;
      if (fr.taps == 0 || fc.taps == 0) {
#pragma omp parallel for schedule(static) if (s.N * s.C * area >= (int64_t(1) << 16))
        for (int64_t nc = 0; nc < s.N * s.C; ++nc)
          for (int64_t u = 0; u < fr.count; ++u)
            for (int64_t v = 0; v < fc.count; ++v)
              a.dx[nc * HW + (i0 + u * s.stride_h) * s.W + j0 + v * s.stride_w] = T(0);
        continue;
      }
      const int64_t taps = fr.taps * fc.taps;
      wt.resize(s.K * Cg * taps);
      for (int64_t g = 0; g < s.groups; ++g)
        for (int64_t k = 0; k < Kg; ++k)
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t m = 0; m < fr.taps; ++m)
              for (int64_t q = 0; q < fc.taps; ++q)
                wt[(((g * Cg + c) * Kg + k) * fr.taps + (fr.taps - 1 - m)) * fc.taps + (fc.taps - 1 - q)] =
                    a.w[(((g * Kg + k) * Cg + c) * s.R + ph + m * s.stride_h) * s.S + pw + q * s.stride_w];
      const ConvShape t = phase_shape(s, fr, fc);
      out.resize(s.N * s.C * area);
      run_forward<T>(plan_phase(plan, t, is_double<T>).path, t, a.dy, wt.data(), nullptr, out.data());
#pragma omp parallel for schedule(static) if (s.N * s.C * area >= (int64_t(1) << 16))
      for (int64_t nc = 0; nc < s.N * s.C; ++nc)
        for (int64_t u = 0; u < fr.count; ++u) {
          const T* src = out.data() + nc * area + u * fc.count;
          T* dst = a.dx + nc * HW + (i0 + u * s.stride_h) * s.W + j0;
          for (int64_t v = 0; v < fc.count; ++v) dst[v * s.stride_w] = src[v];
        }
    }
  }
}

template <typename T>
void grad_input_gemm_col2im(const ConvArgs<T>& a) {
  const ConvShape& s = a.s;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.out_volume(), HW = s.in_volume();
  const int64_t a_size = packed_a_size<T>(CRS, Kg);
  // A = W[g]^T: element (crs, k) sits at w[(g*Kg + k)*CRS + crs].
  const Buffer<T> a_packed = alloc_buffer<T>(s.groups * a_size);
  const int threads = threads_for(s.N * s.K * PQ * CRS);
  // col2im of different column blocks of one image overlaps, so a task owns whole images of one group.
  // Small maps put several images side by side in the GEMM columns (PQ = 16 filled a third of a 48-wide
  // panel): as many per task as keep every thread busy, up to a 256-column block.
  const int64_t images = PQ >= 256 ? 1 : std::clamp<int64_t>(ceil_div(s.N * s.groups, threads) / s.groups, 1,
                                                              std::max<int64_t>(1, 256 / PQ));
  const int64_t span = images * PQ, nc = std::min<int64_t>(ceil_div(span, GemmTile<T>::NR) * GemmTile<T>::NR, 256);
  const int64_t batches = ceil_div(s.N, images), tasks = batches * s.groups;
#pragma omp parallel num_threads(threads)
  {
    pack_weights_per_group(a.w, s.groups, CRS, Kg, int64_t(1), CRS, Kg * CRS, a_packed.get());
    Buffer<T> b_buf = alloc_buffer<T>(packed_b_size<T>(nc));
    Buffer<T> col = alloc_buffer<T>(CRS * nc);
    Buffer<T> dy_rows = alloc_buffer<T>(images > 1 ? Kg * nc : 0);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t n0 = (t / s.groups) * images, g = t % s.groups, n1 = std::min(s.N, n0 + images);
      const int64_t cols = (n1 - n0) * PQ;  // j = (n - n0) * PQ + p
      for (int64_t n = n0; n < n1; ++n) std::fill_n(a.dx + (n * s.C + g * Cg) * HW, Cg * HW, T(0));
      for (int64_t j0 = 0; j0 < cols; j0 += nc) {
        const int64_t ncur = std::min(nc, cols - j0);
        // B = dy over columns [j0, j0+ncur): straight from one image, or first made dense across images.
        const T* dy_block = a.dy + (n0 * s.K + g * Kg) * PQ + j0;
        int64_t ld = PQ;
        if (images > 1) {
          for (int64_t j = j0; j < j0 + ncur;) {
            const int64_t n = n0 + j / PQ, p = j % PQ, run = std::min(PQ - p, j0 + ncur - j);
            for (int64_t k = 0; k < Kg; ++k)
              std::memcpy(dy_rows.get() + k * ncur + (j - j0), a.dy + (n * s.K + g * Kg + k) * PQ + p, run * sizeof(T));
            j += run;
          }
          dy_block = dy_rows.get();
          ld = ncur;
        }
        auto pack_b = [&](int64_t k0, int64_t kc, T* dst) {
          for (int64_t k = 0; k < kc; ++k) scatter_row_to_panels(dy_block + (k0 + k) * ld, ncur, k, kc, dst);
        };
        gemm_packed<T>(CRS, ncur, Kg, a_packed.get() + g * a_size, pack_b, b_buf.get(), col.get(), ncur, nullptr,
                       false);
        for (int64_t j = j0; j < j0 + ncur;) {
          const int64_t n = n0 + j / PQ, p = j % PQ, run = std::min(PQ - p, j0 + ncur - j);
          T* dx_g = a.dx + (n * s.C + g * Cg) * HW;
          for (int64_t crs = 0; crs < CRS; ++crs) col2im_row_add(dx_g, s, crs, p, run, col.get() + crs * ncur + (j - j0));
          j += run;
        }
      }
    }
  }
}

// `across`: the reduction runs over the positions of the whole batch (gemm_across_images).
template <typename T>
void grad_weight_gemm(const ConvArgs<T>& a, bool across) {
  using G = GemmTile<T>;
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;  // NR is a whole number of vectors
  const ConvShape& s = a.s;
  const int64_t Kg = s.k_per_group(), Cg = s.c_per_group(), CRS = s.crs(), PQ = s.out_volume(), HW = s.in_volume();
  const int threads = threads_for(s.N * s.K * PQ * CRS);
  // The reduction runs over each image's output positions, or, for small maps (see forward_across_images),
  // over the positions of the whole batch (j = n*PQ + p) in chunks that span images, enough for every thread.
  const int64_t span = across ? s.N * PQ : PQ, sequences = across ? 1 : s.N;
  // Reduction positions per task: at most 4 KC blocks, and across images as many tasks as a whole number
  // of rounds of the threads (7 tasks on 2 threads left one idle an eighth of the time).
  const int64_t rounds = ceil_div(ceil_div(span, 4 * G::KC), threads);
  const int64_t chunk = across ? std::max<int64_t>(G::NR, ceil_div(span, rounds * threads)) : 4 * G::KC;
  const int64_t chunks = ceil_div(span, chunk), tasks = sequences * s.groups * chunks;
  const int64_t dw_size = s.K * CRS, RS = s.taps();
  const TapIndex taps = across ? TapIndex(s) : TapIndex();
  // Each thread sums its tasks into a private copy (its first task of a group writes without adding, so
  // nothing needs zeroing first); copies are added in thread order, so the result is deterministic for a
  // given thread count.
  const Buffer<T> partial = alloc_buffer<T>(threads * dw_size);
  std::vector<char> touched(static_cast<size_t>(threads) * s.groups, 0);
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num();
    Buffer<T> a_buf = alloc_buffer<T>(packed_a_size<T>(Kg, chunk));
    Buffer<T> b_buf = alloc_buffer<T>(packed_b_size<T>(CRS));
    Buffer<T> tile = alloc_buffer<T>(L * G::KC);
    Buffer<T> a_rows = alloc_buffer<T>(across ? Kg * chunk : 0);
    std::vector<int32_t> source(across ? RS * G::KC : 0);  // source[rs * KC + k]: see forward_across_images
    T* mine = partial.get() + tid * dw_size;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t n = t / (s.groups * chunks), g = (t / chunks) % s.groups, p0 = (t % chunks) * chunk;
      const int64_t len = std::min(chunk, span - p0);
      if (across) {
        // A = dy over batch positions [p0, p0+len), copied image by image into a dense Kg x len block.
        for (int64_t j = p0; j < p0 + len;) {
          const int64_t m = j / PQ, p = j % PQ, run = std::min(PQ - p, p0 + len - j);
          for (int64_t k = 0; k < Kg; ++k)
            std::memcpy(a_rows.get() + k * len + (j - p0), a.dy + (m * s.K + g * Kg + k) * PQ + p, run * sizeof(T));
          j += run;
        }
        pack_a(a_rows.get(), len, int64_t(1), Kg, len, a_buf.get());
      } else {
        pack_a(a.dy + (n * s.K + g * Kg) * PQ + p0, PQ, int64_t(1), Kg, len, a_buf.get());
      }
      const T* x_g = a.x + (n * s.C + g * Cg) * HW;
      auto pack_b = [&](int64_t k0, int64_t kc, T* dst) {
        // B = col^T: reduction row k is position p0+k0+k, column j is im2col row j, filled a row at a time
        // from the image's im2col runs, or across images by a gather through the block's source offsets.
        if (across)
          for (int64_t rs = 0; rs < RS; ++rs)
            fill_sources(taps.row(rs), p0 + k0, kc, PQ, (g * Cg) * HW, s.C * HW, source.data() + rs * G::KC);
        // L columns at a time: their rows into a tile, then L x L transposes into the k-major panel, so
        // that the panel is written in whole vectors rather than one element per NR-strided store.
        for (int64_t j0 = 0; j0 < ceil_div(CRS, G::NR) * G::NR; j0 += L) {
          for (int64_t r = 0; r < L; ++r) {
            const int64_t j = j0 + r;
            T* row = tile.get() + r * G::KC;
            if (j >= CRS) std::fill(row, row + kc, T(0));
            else if (across) gather_row(a.x + (j / RS) * HW, source.data() + (j % RS) * G::KC, kc, row);
            else im2col_row(x_g, s, j, p0 + k0, kc, row);
          }
          T* d = dst + (j0 / G::NR) * G::NR * kc + j0 % G::NR;
          int64_t k = 0;
          for (; k + L <= kc; k += L) {
            V v[L];
            for (int r = 0; r < L; ++r) v[r] = Vec<T>::load(tile.get() + r * G::KC + k);
            Vec<T>::transpose(v);
            for (int i = 0; i < L; ++i) Vec<T>::store(d + (k + i) * G::NR, v[i]);
          }
          for (; k < kc; ++k)
            for (int r = 0; r < L; ++r) d[k * G::NR + r] = tile[r * G::KC + k];
        }
      };
      char& seen = touched[tid * s.groups + g];
      gemm_packed<T>(Kg, CRS, len, a_buf.get(), pack_b, b_buf.get(), mine + g * Kg * CRS, CRS, nullptr, seen != 0);
      seen = 1;
    }
    // (the loop's barrier: every copy is complete)
#pragma omp for schedule(static)
    for (int64_t i = 0; i < dw_size; ++i) {
      const int64_t g = i / (Kg * CRS);
      T sum = T(0);
      for (int t = 0; t < threads; ++t)
        if (touched[t * s.groups + g]) sum += partial[t * dw_size + i];
      a.dw[i] = sum;
    }
  }
}

}  // namespace

template <typename T>
void conv2d_forward(const ConvArgs<T>& a) {
  const ConvPlan plan = plan_forward(a.s, is_double<T>, a.packed_w != nullptr);
  // Stream outputs past several MiB: they leave the caches anyway, and streaming saves the memory
  // read that a normal store does first (a third of the stem convolution's traffic).
  const bool streaming = a.s.N * a.s.K * a.s.out_volume() * int64_t(sizeof(T)) >= (int64_t(8) << 20);
  const Epilogue<T> ep{a.act, a.slope, streaming};
  const T* packed = a.packed_w && a.packed_layout == static_cast<int>(plan.path) ? a.packed_w : nullptr;
  InputPrologue<T> pro{a.in_scale, a.in_shift, a.in_relu};
  // The paths that do not gather their input read it as it is: the prologue runs one pass ahead.
  Buffer<T> prepared;
  const T* x = a.x;
  if (pro.scale && !reads_prologue(plan.path)) {
    const int64_t planes = a.s.N * a.s.C, HW = a.s.in_volume();
    prepared = alloc_buffer<T>(planes * HW);
#pragma omp parallel for schedule(static) num_threads(threads_for(planes * HW * 16))
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < HW; ++i) prepared[p * HW + i] = pro.apply(a.x[p * HW + i], p % a.s.C);
    x = prepared.get();
    pro = {};
  }
  if (!a.residual || reads_residual(plan.path)) {
    run_forward<T>(plan.path, a.s, x, a.w, a.bias, a.y, ep, packed, a.residual, pro);
  } else {
    // The other paths' epilogues take no residual: it and the activation follow in one pass over y.
    run_forward<T>(plan.path, a.s, x, a.w, a.bias, a.y, Epilogue<T>{}, packed);
    const int64_t n = a.s.N * a.s.K * a.s.out_volume();
    const Epilogue<T> act{a.act, a.slope, false};
#pragma omp parallel for schedule(static) num_threads(threads_for(n * 16))
    for (int64_t i = 0; i < n; ++i) a.y[i] = act.apply(a.y[i] + a.residual[i]);
  }
  if (streaming) std::atomic_thread_fence(std::memory_order_seq_cst);  // order the streaming stores
}

template <typename T>
int64_t conv2d_packed_weight_size(ConvPath layout, const ConvShape& s) {
  check_packable(layout, s);
  if (layout == ConvPath::winograd3d_f2x3) return conv3d_winograd_weights_size<T>(s);
  if (layout == ConvPath::forward_direct) return direct_weights_size<T>(s);
  return layout == ConvPath::forward_weight_panels ? weight_panels_size<T>(s) : winograd_panels_size<T>(s);
}

template <typename T>
void conv2d_pack_weight(ConvPath layout, const ConvShape& s, const T* w, T* packed) {
  check_packable(layout, s);
  if (layout == ConvPath::winograd3d_f2x3) conv3d_pack_winograd_weights(s, w, packed);
  else if (layout == ConvPath::forward_direct) pack_direct_weights(s, w, packed);
  else if (layout == ConvPath::forward_weight_panels) pack_weight_panels(s, w, packed);
  else pack_winograd_panels(s, w, packed);
}

template <typename T>
void conv2d_grad_input(const ConvArgs<T>& a) {
  const ConvPlan plan = plan_grad_input(a.s, is_double<T>);
  switch (plan.path) {
    case ConvPath::grad_input_grid: return conv2d_grad_input_shifted(a.s, a.dy, a.w, a.dx);
    case ConvPath::as_forward: return grad_input_as_forward(plan, a);
    case ConvPath::phases: return grad_input_by_phases(plan, a);
    case ConvPath::gemm_col2im: return grad_input_gemm_col2im(a);
    default: throw std::logic_error("conv2d_grad_input: not a grad-input path");
  }
}

template <typename T>
void conv2d_grad_weight(const ConvArgs<T>& a) {
  const ConvPlan plan = plan_grad_weight(a.s, is_double<T>);
  switch (plan.path) {
    case ConvPath::grad_weight_winograd_f4x3:
    case ConvPath::grad_weight_winograd_f2x3:
    case ConvPath::grad_weight_winograd3d_f2x3: return conv_grad_weight_winograd(plan.path, a.s, a.x, a.dy, a.dw);
    case ConvPath::grad_weight_grid: return conv2d_grad_weight_shifted(a.s, a.x, a.dy, a.dw);
    case ConvPath::grad_weight_gemm_across_images: return grad_weight_gemm(a, true);
    case ConvPath::grad_weight_gemm: return grad_weight_gemm(a, false);
    default: throw std::logic_error("conv2d_grad_weight: not a grad-weight path");
  }
}

template <typename T>
void conv2d_grad_bias(const ConvArgs<T>& a) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  const ConvShape& s = a.s;
  const int64_t PQ = s.out_volume();
#pragma omp parallel for schedule(static) num_threads(threads_for(s.N * s.K * PQ))
  for (int64_t k = 0; k < s.K; ++k) {
    V acc = V{};
    T tail = T(0);
    for (int64_t n = 0; n < s.N; ++n) {
      const T* p = a.dy + (n * s.K + k) * PQ;
      int64_t i = 0;
      for (; i + L <= PQ; i += L) acc += Vec<T>::load(p + i);
      for (; i < PQ; ++i) tail += p[i];
    }
    for (int l = 0; l < L; ++l) tail += acc[l];
    a.db[k] = tail;
  }
}

#define MEDKERN_INSTANTIATE(T)                                  \
  template void conv2d_forward<T>(const ConvArgs<T>&);        \
  template void conv2d_grad_input<T>(const ConvArgs<T>&);     \
  template void conv2d_grad_weight<T>(const ConvArgs<T>&);    \
  template void conv2d_grad_bias<T>(const ConvArgs<T>&);     \
  template int64_t conv2d_packed_weight_size<T>(ConvPath, const ConvShape&); \
  template void conv2d_pack_weight<T>(ConvPath, const ConvShape&, const T*, T*);
MEDKERN_INSTANTIATE(float)
MEDKERN_INSTANTIATE(double)
#undef MEDKERN_INSTANTIATE

}  // namespace medkern::cpu

// The convolution planners (see conv_plan.h). Each path has two rules: `applies` (its kernel is correct for
// the shape: a forced path must pass it) and `preferred` (it measured faster than the paths after it for
// such shapes). Measurements behind the constants are in benchmarks/ and the commit messages.
#include "conv_plan.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "conv2d_shifted_grid.h"
#include "gemm.h"

namespace medkern::cpu {
namespace {

// --- the performance rules' constants -------------------------------------------------------------------

// Winograd's a*a GEMMs are too thin for the micro-kernel below this many channels on either side, and the
// transforms then dominate.
constexpr int64_t kWinogradF2x3MinChannels = 16;
// ... and on maps of fewer positions: 4 or 1 tiles per image (4x4, 2x2 maps: DenseNet-121's last blocks at
// 64 px, batch 32) ran 1.7x and 2.1x slower than gemm_across_images; an 8x8 map's 16 ran faster.
constexpr int64_t kWinogradF2x3MinPositions = 36;
// F(2x2, 2x2) saves 16C - 9C per output: the transforms outweigh that below 32 inputs and 64 outputs.
constexpr int64_t kWinogradF2x2MinInputs = 32, kWinogradF2x2MinOutputs = 64;
// F(4x4, 4x4) reduces over 4 phase planes per channel, so even an RGB stem has enough; few outputs do not.
constexpr int64_t kWinogradF4x4MinOutputs = 16;
// F(4x4, 3x3)'s 6x6 transforms cost more per tile than F(2x2, 3x3)'s 4x4 ones, and its transformed kernels are
// 36/16 as large: it runs where it needs at most this share of F(2x2, 3x3)'s products (batch 32: 0.57 of them at
// 64x28x28, 1.3-1.4x faster; batch 1 at 28x28: 0.9, 7% slower), with 64 channels or more on each side (32 at
// 28x28, batch 8: 6% slower), on maps of 28x28 or more (batch 32 at 128x14x14 and 256x7x7 ran 10-15% slower
// although it needed 0.75 and 0.61 of the products).
constexpr double kWinogradF4x3MaxShareOfF2x3 = 0.8;
constexpr int64_t kWinogradF4x3MinChannels = 64, kWinogradF4x3MinPositions = 28 * 28;
// F(2x2x2, 3x3x3) on volumes of fewer output positions (7^3, 256 channels, batch 8) ran 1.2x slower than
// gemm_across_images although it needed 0.43 of the products: its per-tile transforms and the short GEMM rows of a
// small block; at 14^3 (128 channels) and 28^3 (64) it ran 1.3x and 1.5x faster than the GEMMs. With its kernels
// transformed ahead (a compiled network) the 7^3 layer ran 1.2x (batch 1) and 1.4x (batch 8) faster than the
// best GEMM, the 4^3 one (512 channels, 8 tiles per image) 1.9x slower.
constexpr int64_t kWinograd3dMinPositions = 1000, kWinograd3dMinPositionsPacked = 300;
// The grad-weight's Winograd reduces over the batch's tiles, a vector of channels at a time: below 32 channels
// on either side (16 at 28x28, batch 32: as fast as the grid; 3 -> 16 at 64x64: 4x slower) the vectors run
// part empty; and each call pays a pass over the a*a*K*C transformed sums, which few tiles do not repay (256
// channels at 4x4, batch 8: 32 F(2x2, 3x3) tiles, 1.4x slower than gemm_across_images; batch 1 at 14x14: 49
// tiles, even). F(4x4, 3x3)'s sums are 36/16 as many: 512 channels at 4x4, batch 128 (128 tiles) ran 1.4x slower
// than F(2x2, 3x3)'s 512 tiles; 256 at 7x7 (512 tiles) 1.3x faster.
constexpr int64_t kWinogradGradWeightMinChannels = 32;
constexpr int64_t kWinogradGradWeightF4x3MinTiles = 256, kWinogradGradWeightF2x3MinTiles = 128;
// The transforms cost too: Winograd runs where it needs at most this share of direct convolution's products.
constexpr double kWinogradMaxProductShare = 0.75;
// The direct few-output loop needs a reduction of this length to beat packing a GEMM ...
constexpr int64_t kFewOutputsMinReduction = 32;
// ... and output rows of half a vector or more, which it runs along.
constexpr int64_t kFewOutputsMinRow = 8;
// The padded grid packs nothing but weights; packing costs the GEMM about the same per im2col element
// whatever the kernel, so the grid wins for large kernels ...
constexpr int64_t kGridMinTaps = 16;
// ... or for few output channels per group, which share each packed element.
constexpr int64_t kGridMaxOutputsPerGroup = 32;
// Grid cells without an output cost multiply-adds like real ones: at most 27 cells per 20 outputs.
constexpr int64_t kGridWasteNum = 27, kGridWasteDen = 20;
// The strided grad-input's grid also wins with more waste (8 cells per 5 outputs) where its GEMM
// alternative is thin: few input channels.
constexpr int64_t kGridThinWasteNum = 8, kGridThinWasteDen = 5, kGridThinMaxInputs = 32;
// Small output maps leave most of a per-image column panel empty and walk im2col runs a few elements
// long: GEMM columns run across the batch below this many positions ...
constexpr int64_t kAcrossImagesMaxPositions = 256;
// ... or, in a batch, for rows narrower than this.
constexpr int64_t kAcrossImagesMaxRow = 32;
// The channel-panel Winograd: from a 7x7 map's 16 tiles (fewer fill half an 8-row register tile) to about 32
// (a 14x14 map's 49 ran a fifth slower than gemm_weight_panels, whose GEMM has 4 times the rows), with 64
// channels or more on each side (the transforms' cost is per channel, the products' per channel pair).
constexpr int64_t kWinogradPanelsMinTiles = 16, kWinogradPanelsMaxTiles = 32, kWinogradPanelsMinChannels = 64;
// Past this many output positions (the whole batch's) the position-column GEMMs fill their panels anyway.
constexpr int64_t kWeightPanelsMaxPositions = 4096;
// Channel panels only as full as the position panels win from this many input channels per group (see
// weight_panels_tie_wins).
constexpr int64_t kWeightPanelsTieMinInputs = 16;
// The direct kernel, with its weights packed ahead, against the planner's other choices at batch 1-8 (interleaved
// sweeps of 250 shapes, 2x2 to 56x56 outputs, 3 to 1024 channels): 1.33x faster at the geometric mean of the shapes
// these rules give it, 1.0x over those they do not. A tile holds whole rows of one image, so rows of 1-2 positions
// leave it part empty past batch 1 (0.6-0.8x at batch 2-8 with 128-512 channels); fewer than 16 input channels
// (RGB, 1x1: 0.5-0.9x) or outputs (16 lanes for 4 channels) do not repay a tile; past about a thousand positions
// the GEMMs' panels fill.
constexpr int64_t kDirectMinRowPastBatch1 = 3, kDirectMinChannels = 16, kDirectMaxPositions = 1024;
constexpr int64_t kDirectMaxPositionsAgainstWinograd = 512, kWinogradPanelsOverDirectMinInputs = 128;
// On volumes the GEMMs gather 27 taps per column and ran 1.3-2x slower than the direct kernel up to 22k positions
// (the stride-2 layers of a 3-d ResNet at batch 1-4, 512 channels at 4^3); F(2x2x2, 3x3x3) won past 512 positions
// with 64 channels or more (1.3-1.7x at 14^3 and 28^3), not with 16-32 (direct 1.1x faster), being per channel what
// its transforms cost.
constexpr int64_t kDirectMaxPositionsVolume = 32768, kWinograd3dOverDirectMinChannels = 64;
// The phase convolutions pack K*R*S rows of dy per input position, GEMM + col2im C*R*S rows of columns:
// with at most half as many input as output channels (an RGB first layer) the latter moves less.
constexpr int64_t kPhasesMaxOutputsPerInput = 2;

// --- facts about the paths ------------------------------------------------------------------------------

// The gather offsets of the across-images GEMM are int32.
bool offsets_fit(const ConvShape& s) { return s.N * s.C * s.in_volume() < (int64_t(1) << 31); }

bool plain(const ConvShape& s) { return s.dil_h == 1 && s.dil_w == 1 && s.groups == 1; }

int64_t panel_columns(bool double_precision) {
  return double_precision ? GemmTile<double>::NR : GemmTile<float>::NR;
}

// The tiles of the whole batch.
int64_t batch_tiles(const WinogradTile& f, const ConvShape& s) {
  return s.N * ceil_div(s.P, int64_t(f.m)) * ceil_div(s.Q, int64_t(f.m));
}

// Winograd's products, a*a per tile and phase plane over whole column panels (at batch 1 a small map leaves
// most of its one panel empty), against direct convolution's R*S per output and input channel.
double winograd_products(const WinogradTile& f, const ConvShape& s, bool double_precision) {
  const int64_t nr = panel_columns(double_precision);
  return double(f.a * f.a * f.stride * f.stride) * double(ceil_div(batch_tiles(f, s), nr) * nr);
}

// The grad-weight's products, a^d per tile against r^d per output direct: its GEMMs reduce over the tiles, so no
// column panel is rounded up. F(2x2x2, 3x3x3) is F(2x2, 3x3) along the depth too.
bool wants_winograd_grad_weight(const WinogradTile& f, const ConvShape& s, int64_t min_tiles) {
  const int dims = s.planar() ? 2 : 3;
  const int64_t tiles = batch_tiles(f, s) * (dims == 3 ? ceil_div(s.O, int64_t(f.m)) : 1);
  double products = double(tiles), direct = double(s.N * s.out_volume());
  for (int d = 0; d < dims; ++d) {
    products *= f.a;
    direct *= 3;
  }
  return s.C >= kWinogradGradWeightMinChannels && s.K >= kWinogradGradWeightMinChannels && tiles >= min_tiles &&
         products <= kWinogradMaxProductShare * direct;
}

bool fewer_products(const WinogradTile& f, const ConvShape& s, bool double_precision) {
  return winograd_products(f, s, double_precision) <= kWinogradMaxProductShare * double(s.R * s.S) * double(s.N * s.P * s.Q);
}

// F(2x2x2, 3x3x3): 64 products per 2x2x2 tile over whole column panels, against 27 per output direct.
bool fewer_products_3d(const ConvShape& s, bool double_precision) {
  const int64_t nr = panel_columns(double_precision);
  const int64_t tiles = s.N * ceil_div(s.O, int64_t(2)) * ceil_div(s.P, int64_t(2)) * ceil_div(s.Q, int64_t(2));
  return 64.0 * double(ceil_div(tiles, nr) * nr) <= kWinogradMaxProductShare * 27.0 * double(s.N * s.out_volume());
}

bool wants_columns_across_images(const ConvShape& s) {
  return s.out_volume() < kAcrossImagesMaxPositions || (s.N > 1 && s.Q < kAcrossImagesMaxRow);
}

// Channel panels waste less than the position panels would: both GEMMs stream the same products, so the
// emptier panels decide (512 channels at 4x4: 11 channel panels 3% empty, against one position panel 67% empty).
bool fewer_empty_channel_columns(int64_t channels, int64_t positions, int64_t nr) {
  return ceil_div(channels, nr) * nr * positions < ceil_div(positions, nr) * nr * channels;
}

bool wants_weight_panels(const ConvShape& s, bool double_precision) {
  const int64_t positions = s.N * s.P * s.Q;
  return positions <= kWeightPanelsMaxPositions &&
         fewer_empty_channel_columns(s.k_per_group(), positions, panel_columns(double_precision));
}

// Few tiles (a 14x14 map or smaller at batch 1) with enough channels on both sides for the transforms to pay.
bool wants_winograd_panels(const ConvShape& s, bool double_precision) {
  const int64_t tiles = s.N * ceil_div(s.P, int64_t(kWinogradF2x3.m)) * ceil_div(s.Q, int64_t(kWinogradF2x3.m));
  return tiles >= kWinogradPanelsMinTiles && tiles <= kWinogradPanelsMaxTiles && s.C >= kWinogradPanelsMinChannels &&
         s.K >= kWinogradPanelsMinChannels && fewer_empty_channel_columns(s.K, tiles, panel_columns(double_precision));
}

bool grid_waste_at_most(const ConvShape& s, int64_t num, int64_t den) {
  return ShiftedGrid(s).waste_at_most(num, den, s);
}

// The grid's own case: large kernels, or few outputs per group, on maps whose padding wastes few cells.
bool grid_suits(const ConvShape& s) {
  return (s.R * s.S >= kGridMinTaps || (s.k_per_group() <= kGridMaxOutputsPerGroup && s.R * s.S > 1)) &&
         grid_waste_at_most(s, kGridWasteNum, kGridWasteDen);
}

// Channel panels exactly as empty as the position panels (32 channels against 64 positions: one panel of 48
// columns either way) also win, with the weights packed ahead and enough input channels, where the grid would
// run (16-32 outputs at 7x7 to 16x16, batch 1-8, 32-1024 inputs: 1.6-2.0x faster at the median of 49 shapes in
// three sweeps, 0.87x at worst); not over 3 input channels (RGB: 0.6-0.8x), and not against the GEMMs (the
// per-image one's 14 shapes: 1.0-1.6x at the median of two sweeps, 0.8x at worst; the across-images one: as often
// slower as faster).
bool weight_panels_tie_wins(const ConvShape& s, bool double_precision) {
  const int64_t positions = s.N * s.P * s.Q, nr = panel_columns(double_precision), k = s.k_per_group();
  return positions <= kWeightPanelsMaxPositions && s.c_per_group() >= kWeightPanelsTieMinInputs && grid_suits(s) &&
         ceil_div(k, nr) * nr * positions == ceil_div(positions, nr) * nr * k;
}

// The phases of one axis; a phase whose first position needs more than its sub-kernel's reach would need
// negative padding, which the forward kernels do not take.
std::vector<StridePhase> axis_phases(int64_t stride, int64_t pad, int64_t taps, int64_t size) {
  std::vector<StridePhase> out(stride);
  for (int64_t p = 0; p < stride; ++p) out[p] = stride_phase(p, stride, pad, taps, size);
  return out;
}

bool phases_fit(const std::vector<StridePhase>& axis) {
  for (const auto& f : axis)
    if (f.taps > 0 && f.count > 0 && f.pad < 0) return false;
  return true;
}

// Calls f(shape) for each phase that has a forward convolution to run.
template <class Fn>
void for_each_phase_shape(const ConvShape& s, Fn&& f) {
  const auto rows = axis_phases(s.stride_h, s.pad_h, s.R, s.H), cols = axis_phases(s.stride_w, s.pad_w, s.S, s.W);
  for (const auto& fr : rows)
    for (const auto& fc : cols)
      if (fr.count > 0 && fc.count > 0 && fr.taps > 0 && fc.taps > 0) f(phase_shape(s, fr, fc));
}

// --- which paths apply, and which are preferred ---------------------------------------------------------

// The paths whose kernels walk the N-d geometry (im2col over depth too) or are made for volumes; the others
// are 2-d only.
bool volumetric(ConvPath p) {
  switch (p) {
    case ConvPath::forward_direct:
    case ConvPath::winograd3d_f2x3:
    case ConvPath::grad_weight_winograd3d_f2x3:
    case ConvPath::forward_gemm:
    case ConvPath::forward_gemm_across_images:
    case ConvPath::as_forward:
    case ConvPath::gemm_col2im:
    case ConvPath::grad_weight_gemm:
    case ConvPath::grad_weight_gemm_across_images: return true;
    default: return false;
  }
}

bool applies(ConvPath p, const ConvShape& s) {
  if (!s.planar() && !volumetric(p)) return false;
  switch (p) {
    case ConvPath::winograd_f2x3_panels:
    case ConvPath::winograd_f4x3:
    case ConvPath::winograd_f2x3:
    case ConvPath::grad_weight_winograd_f4x3:
    case ConvPath::grad_weight_winograd_f2x3:
      return plain(s) && s.R == 3 && s.S == 3 && s.stride_h == 1 && s.stride_w == 1;
    case ConvPath::winograd_f4x4_phases:
      return plain(s) && (s.R == 7 || s.R == 8) && (s.S == 7 || s.S == 8) && s.stride_h == 2 && s.stride_w == 2;
    case ConvPath::winograd_f2x2_phases:
      return plain(s) && s.R == 4 && s.S == 4 && s.stride_h == 2 && s.stride_w == 2;
    case ConvPath::winograd3d_f2x3:
    case ConvPath::grad_weight_winograd3d_f2x3:
      return !s.planar() && plain(s) && s.dil_d == 1 && s.T == 3 && s.R == 3 && s.S == 3 && s.stride_d == 1 &&
             s.stride_h == 1 && s.stride_w == 1;
    case ConvPath::few_outputs: return s.k_per_group() <= 4;
    case ConvPath::forward_direct: return true;
    case ConvPath::forward_weight_panels:
    case ConvPath::forward_gemm_across_images:
    case ConvPath::grad_weight_gemm_across_images: return offsets_fit(s);
    case ConvPath::as_forward:
      return s.stride_d == 1 && s.stride_h == 1 && s.stride_w == 1 && s.dil_d * (s.T - 1) >= s.pad_d &&
             s.dil_h * (s.R - 1) >= s.pad_h && s.dil_w * (s.S - 1) >= s.pad_w;
    case ConvPath::phases:
      return (s.stride_h > 1 || s.stride_w > 1) && s.dil_h == 1 && s.dil_w == 1 &&
             phases_fit(axis_phases(s.stride_h, s.pad_h, s.R, s.H)) &&
             phases_fit(axis_phases(s.stride_w, s.pad_w, s.S, s.W));
    case ConvPath::forward_grid:
    case ConvPath::forward_gemm:
    case ConvPath::grad_input_grid:
    case ConvPath::gemm_col2im:
    case ConvPath::grad_weight_grid:
    case ConvPath::grad_weight_gemm: return true;
    default: return false;
  }
}

// Why a path does not apply to shape s, for the error a forced path raises.
const char* requirement(ConvPath p, const ConvShape& s) {
  if (!s.planar() && !volumetric(p)) return "a 2-d shape (it has no kernel for volumes)";
  switch (p) {
    case ConvPath::winograd_f2x3_panels:
    case ConvPath::winograd_f4x3:
    case ConvPath::winograd_f2x3:
    case ConvPath::grad_weight_winograd_f4x3:
    case ConvPath::grad_weight_winograd_f2x3: return "a 3x3 kernel, stride 1, dilation 1 and one group";
    case ConvPath::winograd_f4x4_phases: return "a 7x7 or 8x8 kernel, stride 2, dilation 1 and one group";
    case ConvPath::winograd_f2x2_phases: return "a 4x4 kernel, stride 2, dilation 1 and one group";
    case ConvPath::winograd3d_f2x3:
    case ConvPath::grad_weight_winograd3d_f2x3: return "a volume, a 3x3x3 kernel, stride 1, dilation 1 and one group";
    case ConvPath::few_outputs: return "at most 4 output channels per group";
    case ConvPath::forward_weight_panels:
    case ConvPath::forward_gemm_across_images:
    case ConvPath::grad_weight_gemm_across_images: return "an input of fewer than 2^31 elements";
    case ConvPath::as_forward: return "stride 1 and padding at most dilation * (kernel - 1)";
    case ConvPath::phases:
      return "a stride above 1, dilation 1, and padding that leaves every phase's sub-kernel within reach";
    default: return "a 2-d shape";
  }
}

// The direct kernel's tiles are rows of output positions: small maps, and channels enough to repay a tile. Against
// F(2x2, 3x3) it wins while the whole batch has few positions, and it leaves to the channel-panel Winograd the even
// maps its tiles cover exactly, with many channels; on volumes, see kDirectMaxPositionsVolume.
bool wants_direct(const ConvShape& s, bool double_precision) {
  const int64_t positions = s.N * s.out_volume();
  if (s.c_per_group() < kDirectMinChannels || s.k_per_group() < kDirectMinChannels ||
      (s.N > 1 && s.Q < kDirectMinRowPastBatch1))
    return false;
  if (!s.planar())
    return positions <= kDirectMaxPositionsVolume &&
           !(applies(ConvPath::winograd3d_f2x3, s) && positions > kDirectMaxPositionsAgainstWinograd &&
             std::min(s.C, s.K) >= kWinograd3dOverDirectMinChannels);
  if (positions > kDirectMaxPositions) return false;
  if (applies(ConvPath::winograd_f2x3, s) && positions > kDirectMaxPositionsAgainstWinograd) return false;
  return !(s.P % 2 == 0 && s.Q % 2 == 0 && s.C >= kWinogradPanelsOverDirectMinInputs &&
           wants_winograd_panels(s, double_precision));
}

bool preferred(ConvPath p, const ConvShape& s, bool double_precision, bool weights_packed) {
  switch (p) {
    case ConvPath::forward_direct: return weights_packed && wants_direct(s, double_precision);
    case ConvPath::winograd_f2x3_panels: return weights_packed && wants_winograd_panels(s, double_precision);
    case ConvPath::winograd_f4x3:
      return s.C >= kWinogradF4x3MinChannels && s.K >= kWinogradF4x3MinChannels &&
             s.P * s.Q >= kWinogradF4x3MinPositions && fewer_products(kWinogradF4x3, s, double_precision) &&
             winograd_products(kWinogradF4x3, s, double_precision) <=
                 kWinogradF4x3MaxShareOfF2x3 * winograd_products(kWinogradF2x3, s, double_precision);
    case ConvPath::winograd_f2x3:
      return s.C >= kWinogradF2x3MinChannels && s.K >= kWinogradF2x3MinChannels &&
             s.P * s.Q >= kWinogradF2x3MinPositions && fewer_products(kWinogradF2x3, s, double_precision);
    case ConvPath::winograd_f4x4_phases:
      return s.K >= kWinogradF4x4MinOutputs && fewer_products(kWinogradF4x4, s, double_precision);
    case ConvPath::winograd_f2x2_phases:
      return s.C >= kWinogradF2x2MinInputs && s.K >= kWinogradF2x2MinOutputs &&
             fewer_products(kWinogradF2x2, s, double_precision);
    case ConvPath::winograd3d_f2x3:
      return s.C >= kWinogradF2x3MinChannels && s.K >= kWinogradF2x3MinChannels &&
             s.out_volume() >= (weights_packed ? kWinograd3dMinPositionsPacked : kWinograd3dMinPositions) &&
             fewer_products_3d(s, double_precision);
    case ConvPath::few_outputs: return s.crs() >= kFewOutputsMinReduction && s.Q >= kFewOutputsMinRow;
    case ConvPath::forward_grid:
      // With the weights packed ahead, channel panels at least as full as the position panels win over the grid
      // (3 input channels excepted; see weight_panels_tie_wins).
      return grid_suits(s) && !(weights_packed && s.c_per_group() >= kWeightPanelsTieMinInputs &&
                                (wants_weight_panels(s, double_precision) || weight_panels_tie_wins(s, double_precision)));
    case ConvPath::forward_weight_panels:
      return weights_packed && (wants_weight_panels(s, double_precision) || weight_panels_tie_wins(s, double_precision));
    case ConvPath::forward_gemm_across_images:
    case ConvPath::grad_weight_gemm_across_images: return wants_columns_across_images(s);
    case ConvPath::grad_input_grid:
      return (s.stride_h > 1 || s.stride_w > 1) &&
             (grid_waste_at_most(s, kGridWasteNum, kGridWasteDen) ||
              (s.c_per_group() <= kGridThinMaxInputs && grid_waste_at_most(s, kGridThinWasteNum, kGridThinWasteDen)));
    case ConvPath::phases: return s.C * kPhasesMaxOutputsPerInput > s.K;
    case ConvPath::grad_weight_winograd_f4x3:
      return wants_winograd_grad_weight(kWinogradF4x3, s, kWinogradGradWeightF4x3MinTiles);
    case ConvPath::grad_weight_winograd_f2x3:
      return wants_winograd_grad_weight(kWinogradF2x3, s, kWinogradGradWeightF2x3MinTiles);
    case ConvPath::grad_weight_winograd3d_f2x3:
      return wants_winograd_grad_weight(kWinogradF2x3, s, kWinogradGradWeightF2x3MinTiles);
    case ConvPath::grad_weight_grid: return grid_waste_at_most(s, kGridWasteNum, kGridWasteDen);
    default: return true;  // as_forward and the GEMM fallbacks
  }
}

// --- names and forcing ----------------------------------------------------------------------------------

struct PathInfo {
  ConvPath path;
  ConvDirection direction;
  const char* name;
};

// In each direction's planning order.
constexpr PathInfo kPaths[] = {
    {ConvPath::forward_direct, ConvDirection::forward, "direct"},
    {ConvPath::winograd_f2x3_panels, ConvDirection::forward, "winograd_f2x3_panels"},
    {ConvPath::winograd_f4x3, ConvDirection::forward, "winograd_f4x3"},
    {ConvPath::winograd_f2x3, ConvDirection::forward, "winograd_f2x3"},
    {ConvPath::winograd_f4x4_phases, ConvDirection::forward, "winograd_f4x4_phases"},
    {ConvPath::winograd_f2x2_phases, ConvDirection::forward, "winograd_f2x2_phases"},
    {ConvPath::winograd3d_f2x3, ConvDirection::forward, "winograd3d_f2x3"},
    {ConvPath::few_outputs, ConvDirection::forward, "few_outputs"},
    {ConvPath::forward_grid, ConvDirection::forward, "grid"},
    {ConvPath::forward_weight_panels, ConvDirection::forward, "gemm_weight_panels"},
    {ConvPath::forward_gemm_across_images, ConvDirection::forward, "gemm_across_images"},
    {ConvPath::forward_gemm, ConvDirection::forward, "gemm"},
    {ConvPath::grad_input_grid, ConvDirection::grad_input, "grid"},
    {ConvPath::as_forward, ConvDirection::grad_input, "as_forward"},
    {ConvPath::phases, ConvDirection::grad_input, "phases"},
    {ConvPath::gemm_col2im, ConvDirection::grad_input, "gemm_col2im"},
    {ConvPath::grad_weight_winograd_f4x3, ConvDirection::grad_weight, "winograd_f4x3"},
    {ConvPath::grad_weight_winograd_f2x3, ConvDirection::grad_weight, "winograd_f2x3"},
    {ConvPath::grad_weight_winograd3d_f2x3, ConvDirection::grad_weight, "winograd3d_f2x3"},
    {ConvPath::grad_weight_grid, ConvDirection::grad_weight, "grid"},
    {ConvPath::grad_weight_gemm_across_images, ConvDirection::grad_weight, "gemm_across_images"},
    {ConvPath::grad_weight_gemm, ConvDirection::grad_weight, "gemm"},
};

const char* name_of(ConvPath p) {
  for (const auto& i : kPaths)
    if (i.path == p) return i.name;
  return "none";
}

bool has_subs(ConvPath p) { return p == ConvPath::as_forward || p == ConvPath::phases; }

ConvPath path_named(const std::string& name, ConvDirection d) {
  for (const auto& i : kPaths)
    if (i.direction == d && name == i.name) return i.path;
  return ConvPath::none;
}

constexpr const char* kDirectionNames[] = {"forward", "grad-input", "grad-weight"};

// The forced spec as text, parsed on every plan (a few string compares, against kernels of microseconds at
// least), so that threads read and replace one value under the lock. The environment gives the first value.
std::mutex g_forced_lock;
std::string& forced_text() {
  static std::string spec = [] {
    const char* v = std::getenv("MEDKERN_CONV_PATH");
    return std::string(v ? v : "");
  }();
  return spec;
}

std::string all_names() {
  std::string out;
  for (const auto& i : kPaths) {
    const std::string quoted = std::string("'") + i.name + "'";
    if (out.find(quoted) == std::string::npos) out += (out.empty() ? "" : ", ") + quoted;
  }
  return out;
}

struct ForcedSpec {
  std::string top, sub;
};

ForcedSpec parse_spec(const std::string& spec) {
  const size_t gt = spec.find('>');
  ForcedSpec f{spec.substr(0, gt), gt == std::string::npos ? std::string() : spec.substr(gt + 1)};
  const auto known = [](const std::string& n, bool forward_only) {
    for (const auto& i : kPaths)
      if (n == i.name && (!forward_only || i.direction == ConvDirection::forward)) return true;
    return false;
  };
  if (!known(f.top, false))
    throw std::invalid_argument("forced convolution path (MEDKERN_CONV_PATH): unknown path '" + f.top +
                                "'; expected one of " + all_names() +
                                ", optionally as_forward>F or phases>F with a forward path F");
  if (gt != std::string::npos &&
      (!has_subs(path_named(f.top, ConvDirection::grad_input)) || !known(f.sub, true)))
    throw std::invalid_argument("forced convolution path (MEDKERN_CONV_PATH): '" + spec +
                                "' is not a path with a sub-plan; only as_forward>F and phases>F take one, F a "
                                "forward path");
  return f;
}

ForcedSpec current_spec() {
  std::string spec;
  {
    std::lock_guard<std::mutex> hold(g_forced_lock);
    spec = forced_text();
  }
  return spec.empty() ? ForcedSpec{} : parse_spec(spec);
}

[[noreturn]] void fail_forced(ConvPath p, ConvDirection d, const std::string& what, const ConvShape& s) {
  throw std::invalid_argument("forced convolution path '" + what + "' (MEDKERN_CONV_PATH) does not apply to this " +
                              kDirectionNames[static_cast<int>(d)] + " convolution: " + name_of(p) + " needs " +
                              requirement(p, s));
}

// The free choice: the first applicable, preferred path of the direction.
ConvPath choose(ConvDirection d, const ConvShape& s, bool double_precision, bool weights_packed = false) {
  ConvPath last = ConvPath::none;
  for (const auto& i : kPaths) {
    if (i.direction != d || !applies(i.path, s)) continue;
    if (preferred(i.path, s, double_precision, weights_packed)) return i.path;
    last = i.path;
  }
  return last;  // the direction's GEMM fallback, which always applies
}

uint32_t bit(ConvPath p) { return 1u << static_cast<int>(p); }

ConvPlan plan_forward_of(const ConvShape& s, bool double_precision, const std::string& forced) {
  if (forced.empty()) return {choose(ConvDirection::forward, s, double_precision), 0};
  const ConvPath p = path_named(forced, ConvDirection::forward);
  if (!applies(p, s)) fail_forced(p, ConvDirection::forward, forced, s);
  return {p, 0};
}

// The sub-plans of an as_forward or phases grad-input; `sub` is the forced forward path, or "".
uint32_t plan_subs(ConvPath p, const ConvShape& s, bool double_precision, const std::string& sub) {
  uint32_t subs = 0;
  const auto add = [&](const ConvShape& t) {
    const ConvPlan f = plan_forward_of(t, double_precision, sub);
    subs |= bit(f.path);
  };
  if (p == ConvPath::as_forward) add(as_forward_shape(s));
  if (p == ConvPath::phases) for_each_phase_shape(s, add);
  return subs;
}

ConvPlan plan_with(ConvDirection d, const ConvShape& s, bool double_precision, const ForcedSpec& spec,
                   bool weights_packed) {
  ConvPath p = path_named(spec.top, d);
  if (p == ConvPath::none) {
    p = choose(d, s, double_precision, weights_packed);
  } else if (!applies(p, s)) {
    fail_forced(p, d, spec.top, s);
  }
  ConvPlan plan{p, 0};
  if (has_subs(p)) {
    try {
      plan.subs = plan_subs(p, s, double_precision, path_named(spec.top, d) == p ? spec.sub : std::string());
    } catch (const std::invalid_argument&) {
      fail_forced(path_named(spec.sub, ConvDirection::forward), d, spec.top + ">" + spec.sub, s);
    }
  }
  return plan;
}

}  // namespace

StridePhase stride_phase(int64_t phase, int64_t stride, int64_t pad, int64_t taps_total, int64_t size) {
  StridePhase f;
  f.taps = taps_total > phase ? ceil_div(taps_total - phase, stride) : 0;
  f.first = phase >= pad ? 0 : ceil_div(pad - phase, stride);
  const int64_t last_num = size - 1 + pad - phase;  // u <= last_num / stride
  f.count = last_num < 0 ? 0 : std::max<int64_t>(0, last_num / stride - f.first + 1);
  f.pad = f.taps - 1 - f.first;
  return f;
}

ConvShape as_forward_shape(const ConvShape& s) {
  ConvShape t = s;
  t.C = s.K; t.D = s.O; t.H = s.P; t.W = s.Q;
  t.K = s.C; t.O = s.D; t.P = s.H; t.Q = s.W;
  t.pad_d = s.dil_d * (s.T - 1) - s.pad_d;
  t.pad_h = s.dil_h * (s.R - 1) - s.pad_h;
  t.pad_w = s.dil_w * (s.S - 1) - s.pad_w;
  return t;
}

ConvShape phase_shape(const ConvShape& s, const StridePhase& rows, const StridePhase& cols) {
  ConvShape t = s;
  t.C = s.K; t.H = s.P; t.W = s.Q;
  t.K = s.C; t.P = rows.count; t.Q = cols.count;
  t.R = rows.taps; t.S = cols.taps;
  t.stride_h = t.stride_w = 1;
  t.pad_h = rows.pad; t.pad_w = cols.pad;
  return t;
}

ConvPath forward_path_named(const std::string& name) { return path_named(name, ConvDirection::forward); }

ConvPlan plan_phase(const ConvPlan& grad_input, const ConvShape& phase, bool double_precision) {
  // A forced sub-plan leaves exactly one bit; the free choice is the forward planner's, as it was planned.
  const ForcedSpec spec = current_spec();
  const bool forced = path_named(spec.top, ConvDirection::grad_input) == grad_input.path && !spec.sub.empty();
  return plan_forward_of(phase, double_precision, forced ? spec.sub : std::string());
}

ConvPlan plan_conv(ConvDirection d, const ConvShape& s, bool double_precision, bool weights_packed) {
  return plan_with(d, s, double_precision, current_spec(), weights_packed);
}
ConvPlan plan_forward(const ConvShape& s, bool dp, bool weights_packed) {
  return plan_conv(ConvDirection::forward, s, dp, weights_packed);
}
ConvPlan plan_grad_input(const ConvShape& s, bool dp) { return plan_conv(ConvDirection::grad_input, s, dp); }
ConvPlan plan_grad_weight(const ConvShape& s, bool dp) { return plan_conv(ConvDirection::grad_weight, s, dp); }

std::string plan_name(const ConvPlan& p) {
  std::string name = name_of(p.path);
  std::string subs;
  for (const auto& i : kPaths)
    if (p.subs & bit(i.path)) subs += (subs.empty() ? "" : "+") + std::string(i.name);
  return subs.empty() ? name : name + ">" + subs;
}

std::vector<std::string> applicable_plans(ConvDirection d, const ConvShape& s, bool double_precision) {
  std::vector<std::string> out;
  for (const auto& top : kPaths) {
    if (top.direction != d || !applies(top.path, s)) continue;
    if (!has_subs(top.path)) {
      out.push_back(top.name);
      continue;
    }
    for (const auto& sub : kPaths) {
      if (sub.direction != ConvDirection::forward) continue;
      try {
        plan_subs(top.path, s, double_precision, sub.name);
        out.push_back(std::string(top.name) + ">" + sub.name);
      } catch (const std::invalid_argument&) {  // that forward path does not apply to some sub-convolution
      }
    }
  }
  return out;
}

void force_conv_path(const std::string& spec) {
  if (!spec.empty()) parse_spec(spec);
  std::lock_guard<std::mutex> hold(g_forced_lock);
  forced_text() = spec;
}

std::string forced_conv_path() {
  std::lock_guard<std::mutex> hold(g_forced_lock);
  return forced_text();
}

}  // namespace medkern::cpu

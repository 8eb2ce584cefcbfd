"""conv2d geometry cases shared by the kernel, op and planner tests: named, hand-picked awkward ones, each
with the paths the planner takes for it (forward, grad-input, grad-weight, in float32), plus seeded random
ones. Tests look cases up by name (``case("...")``), never by position. A case is (N, C, H, W, K, R, S,
stride, padding (top, left), extra trailing padding, dilation, groups, bias, name, plans)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medkern._geometry import ConvParams, conv_out_size


@dataclass(frozen=True)
class Case:
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    extra: tuple = (0, 0)  # trailing padding beyond the leading one: 1 models torch's 'same' with even kernels
    dilation: tuple = (1, 1)
    groups: int = 1
    bias: bool = True
    name: str = ""
    plans: tuple = ()  # (forward, grad_input, grad_weight) as medkern.ops.conv_plan names them; () for random cases
    packed_plan: str = ""  # the forward plan with the weights packed ahead (a compiled network), where it differs

    @property
    def params(self) -> ConvParams:
        return ConvParams(self.stride, self.padding, self.dilation, self.groups)

    @property
    def out_hw(self):
        return tuple(conv_out_size(n, k, s, 2 * p + e, d) for n, k, s, p, e, d in
                     zip((self.H, self.W), (self.R, self.S), self.stride, self.padding, self.extra, self.dilation))

    def tensors(self, dtype, device="cpu", seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.N, self.C, self.H, self.W, generator=g, dtype=torch.float64)
        w = torch.randn(self.K, self.C // self.groups, self.R, self.S, generator=g, dtype=torch.float64)
        b = torch.randn(self.K, generator=g, dtype=torch.float64) if self.bias else None
        dy = torch.randn(self.N, self.K, *self.out_hw, generator=g, dtype=torch.float64)
        cast = lambda t: None if t is None else t.to(dtype=dtype, device=device)  # noqa: E731
        return cast(x), cast(w), cast(b), cast(dy)

    def planner_args(self, double_precision: bool = False) -> tuple:
        """The planner binding's N-d arguments (depth 1) after the direction."""
        return ((self.N, self.C, 1, self.H, self.W), (self.K, self.C // self.groups, 1, self.R, self.S),
                (1, *self.out_hw), (1, *self.stride), (0, *self.padding), (1, *self.dilation), self.groups,
                double_precision)

    def id(self) -> str:
        return self.name or self.shape_id()

    def shape_id(self) -> str:
        return (f"{self.N}x{self.C}x{self.H}x{self.W}-K{self.K}-{self.R}x{self.S}-s{self.stride}-p{self.padding}"
                f"{'+' + str(self.extra) if any(self.extra) else ''}-d{self.dilation}-g{self.groups}"
                f"{'' if self.bias else '-nobias'}")


def reference(case: Case, x, w, b, dy):
    """float64 torch: output, grad_input, grad_weight, grad_bias."""
    x = x.detach().double().cpu().requires_grad_()
    w = w.detach().double().cpu().requires_grad_()
    b = None if b is None else b.detach().double().cpu().requires_grad_()
    (ph, pw), (eh, ew) = case.padding, case.extra
    y = F.conv2d(F.pad(x, (pw, pw + ew, ph, ph + eh)), w, b, case.stride, 0, case.dilation, case.groups)
    grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], dy.double().cpu())
    return y.detach(), grads[0], grads[1], (grads[2] if b is not None else None)


HAND_PICKED = [
    Case(2, 3, 7, 9, 5, 3, 3, padding=(1, 1), name="basic_3x3",
         plans=("grid", "as_forward>few_outputs", "grid")),
    Case(1, 1, 1, 1, 1, 1, 1, bias=False, name="all_ones",
         plans=("gemm_across_images", "as_forward>gemm_across_images", "grid")),
    Case(3, 4, 11, 13, 6, 3, 3, stride=(2, 2), padding=(1, 1), groups=2, name="strided_grouped",
         plans=("grid", "grid", "grid")),
    Case(2, 6, 9, 8, 4, 2, 2, dilation=(2, 2), groups=2, name="even_kernel_dilated",
         plans=("gemm_across_images", "as_forward>grid", "gemm_across_images")),
    Case(1, 3, 5, 5, 40, 1, 1, name="pointwise_40_outputs",  # K not a multiple of the register tile
         plans=("gemm_across_images", "as_forward>gemm_across_images", "grid"), packed_plan="gemm_weight_panels"),
    Case(2, 8, 17, 19, 36, 5, 5, stride=(3, 3), padding=(2, 2), dilation=(2, 2), groups=4, name="k5_s3_d2_g4",
         plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
    Case(2, 5, 10, 7, 3, 4, 2, padding=(1, 0), extra=(1, 1), name="same_even_kernel",  # torch's 'same', even kernel
         plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    Case(2, 4, 9, 9, 4, 3, 3, padding=(2, 2), dilation=(2, 1), extra=(0, 1), name="dilated_rows_extra_pad",
         plans=("few_outputs", "as_forward>few_outputs", "grid")),
    Case(1, 2, 4, 6, 3, 5, 3, padding=(2, 1), name="kernel_taller_than_input",  # held up by padding
         plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    Case(2, 32, 12, 10, 13, 3, 3, padding=(1, 1), name="reduction_over_one_block",  # 288 > one KC block
         plans=("grid", "as_forward>grid", "grid")),
    # Large maps at batch 1, where the per-image GEMM fills its column panels: pointwise, and 5x5 with too
    # much padding for the grid (19x19 cells for 16x16 outputs).
    Case(1, 16, 20, 20, 64, 1, 1, name="pointwise_large_map",
         plans=("gemm", "as_forward>gemm", "grid"), packed_plan="direct"),
    Case(1, 8, 16, 16, 16, 7, 7, padding=(3, 3), name="k7_padded_map_batch1",
         plans=("gemm", "as_forward>gemm", "gemm")),
    Case(1, 3, 6, 7, 2, 1, 1, padding=(1, 1), name="padding_past_kernel_reach",
         plans=("gemm_across_images", "gemm_col2im", "grid")),
    Case(2, 6, 8, 8, 6, 3, 3, stride=(1, 2), padding=(0, 1), groups=6, name="depthwise_strided",
         plans=("gemm_across_images", "phases>grid", "gemm_across_images")),
    Case(3, 2, 37, 41, 5, 3, 3, stride=(2, 3), padding=(1, 1), bias=False, name="unequal_strides",
         plans=("grid", "grid", "grid")),
    # Strided grad-inputs: DCGAN's k4 s2 p1 with enough channels; the same with few input channels; a phase
    # no tap reaches (k1 s2, k2 s3, stride over kernel); a phase whose padding would be negative (k3 s2 p2).
    Case(2, 17, 9, 10, 20, 4, 4, stride=(2, 2), padding=(1, 1), name="dcgan_k4s2",
         plans=("gemm_across_images", "grid", "gemm_across_images"), packed_plan="direct"),
    Case(2, 3, 12, 11, 16, 4, 4, stride=(2, 2), padding=(1, 1), name="dcgan_k4s2_few_inputs",
         plans=("gemm_across_images", "grid", "gemm_across_images")),
    Case(1, 32, 7, 7, 40, 3, 3, padding=(1, 1), name="batch1_small_map",  # the threads split the output channels
         plans=("gemm_across_images", "as_forward>grid", "grid"), packed_plan="direct"),
    # 64 channels on a 28x28 map, a batch of 2: F(4x4, 3x3) needs 3/4 of F(2x2, 3x3)'s products.
    Case(2, 64, 28, 28, 64, 3, 3, padding=(1, 1), name="winograd_4x4_tiles",
         plans=("winograd_f4x3", "as_forward>winograd_f4x3", "winograd_f2x3")),
    # The grad-weight's Winograd reduces over the batch's tiles: one image of 28x28 has 196 F(2x2, 3x3) tiles
    # but only 49 F(4x4, 3x3) ones.
    Case(1, 32, 28, 28, 48, 3, 3, padding=(1, 1), name="grad_weight_winograd_f2x3",
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "winograd_f2x3")),
    # ... and channel counts that fill no vector, on odd maps whose last tiles hang over both edges: 300
    # F(4x4, 3x3) tiles.
    Case(3, 40, 38, 37, 33, 3, 3, padding=(1, 1), name="grad_weight_winograd_f4x3_ragged",
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "winograd_f4x3")),
    # Batch-1 inference's deep 3x3 layers: 16 Winograd tiles, output channels in the vector lanes.
    Case(1, 64, 7, 7, 96, 3, 3, padding=(1, 1), name="batch1_7x7_winograd_channels",
         plans=("gemm_across_images", "as_forward>gemm_across_images", "grid"), packed_plan="direct"),
    # ... and on an 8x8 map, which its tiles cover exactly, with 128 channels: ahead of the direct kernel.
    Case(1, 128, 8, 8, 128, 3, 3, padding=(1, 1), name="batch1_8x8_winograd_channels",
         plans=("gemm_across_images", "as_forward>gemm_across_images", "grid"), packed_plan="winograd_f2x3_panels"),
    # Rows of 2 in a batch: the direct kernel's tiles (rows of one image) would be mostly empty, so the channel
    # panels.
    Case(2, 64, 4, 4, 64, 3, 3, stride=(2, 2), padding=(1, 1), name="batch2_rows_of_2",
         plans=("gemm_across_images", "phases>gemm_across_images", "gemm_across_images"),
         packed_plan="gemm_weight_panels"),
    # Rows of 5, at most two to a tile of the direct kernel (tiles of 1, 2 and 2 rows).
    Case(1, 32, 5, 5, 40, 3, 3, padding=(1, 1), name="batch1_short_rows",
         plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images"), packed_plan="direct"),
    # The direct kernel on two groups of 24 outputs (one vector per block, a part-empty one), rows of 14 (two
    # tiles of 7).
    Case(2, 32, 14, 14, 48, 3, 3, padding=(1, 1), groups=2, name="direct_groups_rows_of_14",
         plans=("grid", "as_forward>grid", "grid"), packed_plan="direct"),
    # A batch of small maps with 64 outputs: position panels (3 of 48 for 144) waste less than channel
    # panels (2 of 48 for 64).
    Case(4, 16, 11, 11, 64, 3, 3, stride=(2, 2), padding=(1, 1), name="batch_small_maps_64_outputs",
         plans=("gemm_across_images", "grid", "grid"), packed_plan="direct"),
    # At most 4 outputs per group: the direct loop (register blocks of 1-4 vectors).
    Case(3, 32, 9, 37, 3, 3, 3, padding=(1, 1), name="three_outputs",
         plans=("few_outputs", "as_forward>grid", "grid")),
    Case(1, 16, 6, 70, 1, 3, 3, padding=(1, 1), extra=(0, 1), name="one_output_long_rows",
         plans=("few_outputs", "as_forward>grid", "grid")),
    Case(2, 8, 11, 23, 4, 3, 3, stride=(2, 2), padding=(1, 2), dilation=(1, 2), groups=2, name="few_outputs_strided",
         plans=("few_outputs", "grid", "grid")),
    Case(3, 40, 4, 4, 1, 4, 4, name="critic_last_layer",  # onto 1x1: rows too short for the direct loop
         plans=("gemm_across_images", "as_forward>grid", "gemm_across_images")),
    # The direct loop reads x in place, masked where a tap's window hangs over a row end: both ends in one
    # vector (9 wide), and dilated taps 3 apart reaching 3 past each end.
    Case(3, 16, 5, 9, 3, 3, 3, padding=(1, 1), name="few_outputs_row_in_one_vector",
         plans=("few_outputs", "as_forward>grid", "grid")),
    Case(2, 12, 10, 40, 2, 3, 3, padding=(2, 3), dilation=(1, 3), name="few_outputs_dilated_row_ends",
         plans=("few_outputs", "as_forward>grid", "grid")),
    Case(3, 5, 64, 9, 6, 3, 3, stride=(1, 2), padding=(1, 1), name="narrow_rows_in_a_batch",
         plans=("grid", "grid", "grid")),
    Case(2, 5, 9, 8, 7, 1, 1, stride=(2, 2), bias=False, name="pointwise_strided",
         plans=("gemm_across_images", "grid", "grid")),
    Case(1, 3, 11, 10, 4, 2, 3, stride=(3, 2), padding=(0, 1), extra=(1, 0), name="stride_3x2_extra_pad",
         plans=("grid", "grid", "grid")),
    Case(2, 3, 13, 9, 5, 3, 3, stride=(4, 4), padding=(1, 1), groups=1, name="stride_over_kernel",
         plans=("grid", "grid", "grid")),
    Case(1, 16, 12, 11, 18, 6, 6, stride=(2, 2), padding=(2, 2), name="k6s2_phase_sub_kernels",
         plans=("gemm_across_images", "phases>gemm_across_images", "gemm_across_images"), packed_plan="direct"),
    Case(2, 4, 10, 9, 6, 3, 3, stride=(2, 2), padding=(2, 2), groups=2, name="negative_phase_padding",
         plans=("grid", "grid", "grid")),
    # GEMM + col2im grad-input on small maps puts several images side by side in the columns: all five
    # images of each group in one task; two threads with 4 and 3 images.
    Case(5, 4, 9, 9, 12, 3, 3, stride=(2, 2), padding=(1, 1), groups=2, name="five_images_small_map",
         plans=("grid", "grid", "grid")),
    Case(7, 8, 10, 10, 32, 4, 4, stride=(2, 2), padding=(1, 1), name="seven_images_k4s2",
         plans=("gemm_across_images", "grid", "gemm_across_images")),
    # The padded grid of the unpacked kernels: long 1-D rows split between threads; a map split into row
    # blocks mid-image; unequal padding (the grid's gaps take the larger side); dilation with padding under
    # the kernel's reach, with groups; 8x8 takes the grid, 5x5 (too much of it padding) the packed GEMM.
    # Strided, one grid plane per stride phase: DCGAN's k4 s2 p1, a k7 s2 stem, stride (3, 2) with dilation
    # (6 planes), 1x1 s2 (one phase read of four), 'same'-style extra padding, stride 3 over a dilated kernel.
    Case(3, 5, 1, 700, 7, 1, 7, padding=(0, 3), name="grid_long_rows",
         plans=("grid", "as_forward>grid", "grid")),
    Case(1, 4, 70, 80, 6, 3, 3, padding=(1, 1), name="grid_row_blocks",
         plans=("grid", "as_forward>few_outputs", "grid")),
    Case(2, 3, 20, 23, 5, 4, 4, padding=(1, 1), extra=(1, 1), name="grid_unequal_padding",
         plans=("grid", "as_forward>few_outputs", "grid")),
    Case(2, 6, 30, 31, 9, 3, 3, padding=(1, 2), dilation=(2, 2), groups=3, bias=False, name="grid_dilated_grouped",
         plans=("grid", "as_forward>grid", "grid")),
    Case(4, 9, 8, 8, 11, 3, 3, padding=(1, 1), name="grid_8x8",
         plans=("grid", "as_forward>grid", "grid")),
    Case(4, 9, 5, 5, 11, 3, 3, padding=(1, 1), name="gemm_5x5",
         plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    Case(2, 5, 32, 30, 7, 4, 4, stride=(2, 2), padding=(1, 1), name="grid_k4s2",
         plans=("grid", "grid", "grid")),
    Case(1, 3, 40, 37, 6, 7, 7, stride=(2, 2), padding=(3, 3), name="grid_stem_few_outputs",
         plans=("grid", "grid", "grid")),
    Case(2, 4, 31, 40, 5, 3, 3, stride=(3, 2), padding=(1, 1), dilation=(2, 1), name="grid_six_planes",
         plans=("grid", "grid", "grid")),
    Case(3, 6, 20, 21, 4, 1, 1, stride=(2, 2), bias=False, name="grid_one_phase_of_four",
         plans=("gemm_across_images", "grid", "grid")),
    Case(2, 4, 30, 28, 6, 3, 3, stride=(2, 2), padding=(1, 1), extra=(1, 0), name="grid_strided_extra_pad",
         plans=("grid", "grid", "grid")),
    Case(2, 6, 25, 33, 4, 5, 3, stride=(2, 3), padding=(2, 1), dilation=(1, 2), groups=2, name="grid_s3_dilated",
         plans=("few_outputs", "grid", "grid")),
]

WINOGRAD = [
    # F(2x2, 3x3): 3x3, stride 1, one group, 16+ channels each side, enough tiles to fill their column panels
    # (also the stride-1 grad-input, which runs as a forward convolution).
    Case(3, 16, 13, 13, 16, 3, 3, padding=(1, 1), name="f2x3_half_tile",  # odd output width
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid"), packed_plan="direct"),
    Case(1, 17, 15, 14, 33, 3, 3, bias=False, name="f2x3_unpadded_odd_height",
         plans=("winograd_f2x3", "as_forward>grid", "grid"), packed_plan="direct"),
    Case(1, 300, 13, 12, 20, 3, 3, padding=(1, 1), name="f2x3_two_reduction_blocks",  # 300 channels
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid"), packed_plan="direct"),
    Case(1, 24, 6, 61, 16, 3, 3, padding=(1, 1), extra=(1, 0), name="f2x3_blocks_cross_panels",  # 31-tile rows
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid"), packed_plan="direct"),
    Case(2, 16, 5, 70, 17, 3, 3, name="f2x3_masked_row_tails",  # rows of several vectors, no padding
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "gemm_across_images"), packed_plan="direct"),
    Case(2, 16, 6, 56, 16, 3, 3, padding=(1, 1), name="f2x3_latency_row_width",
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid")),
    # Small maps: a column panel holds tiles of several images, and the panels split tile rows.
    Case(6, 17, 9, 9, 20, 3, 3, name="f2x3_two_panels_exactly",  # 7x7 outputs, a part tile each way
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "gemm_across_images"), packed_plan="direct"),
    Case(3, 16, 10, 30, 16, 3, 3, padding=(1, 1), name="f2x3_panels_split_tile_rows",
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid")),
    Case(5, 16, 7, 7, 24, 3, 3, padding=(1, 1), bias=False, name="f2x3_image_across_panel_edge",
         plans=("winograd_f2x3", "as_forward>winograd_f2x3", "grid"), packed_plan="direct"),
    # F(4x4, 4x4) on the four stride phases: 7x7 and 8x8 kernels, stride 2, 16+ outputs, enough tiles.
    Case(1, 3, 40, 37, 16, 7, 7, stride=(2, 2), padding=(3, 3), name="f4x4_stem",  # a part tile each way
         plans=("winograd_f4x4_phases", "grid", "grid")),
    Case(2, 5, 33, 30, 17, 8, 8, stride=(2, 2), padding=(3, 2), extra=(1, 0), name="f4x4_odd_phases_pad",
         plans=("winograd_f4x4_phases", "grid", "grid")),
    Case(1, 2, 31, 70, 20, 7, 8, stride=(2, 2), padding=(0, 4), bias=False, name="f4x4_7x8_long_rows",
         plans=("winograd_f4x4_phases", "grid", "grid")),
    Case(2, 70, 30, 29, 16, 7, 7, stride=(2, 2), padding=(3, 3), name="f4x4_two_reduction_blocks",  # 280 planes
         plans=("winograd_f4x4_phases", "grid", "grid"), packed_plan="direct"),
    # F(2x2, 2x2) on the phases: 4x4 stride 2 with 32+ inputs and 64+ outputs (a DCGAN discriminator).
    Case(8, 32, 16, 16, 64, 4, 4, stride=(2, 2), padding=(1, 1), name="f2x2_critic",
         plans=("winograd_f2x2_phases", "grid", "grid"), packed_plan="direct"),
    Case(6, 32, 15, 17, 66, 4, 4, stride=(2, 2), padding=(1, 1), bias=False, name="f2x2_part_tile",  # 7 rows
         plans=("winograd_f2x2_phases", "grid", "grid"), packed_plan="direct"),
]
HAND_PICKED += WINOGRAD


def random_cases(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        groups = rng.choice([1, 1, 2, 3])
        R, S = rng.randint(1, 5), rng.randint(1, 5)
        dilation = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, R // 2 * dilation[0] + 1), rng.randint(0, S // 2 * dilation[1] + 1))
        c = Case(N=rng.randint(1, 3), C=groups * rng.randint(1, 5), H=rng.randint(1, 23), W=rng.randint(1, 23),
                 K=groups * rng.randint(1, 9), R=R, S=S, stride=(rng.randint(1, 3), rng.randint(1, 3)),
                 padding=padding, extra=(rng.randint(0, 1), rng.randint(0, 1)), dilation=dilation,
                 groups=groups, bias=rng.random() < 0.7, name=f"random{seed}_{len(out)}")
        if min(c.out_hw) >= 1:
            out.append(c)
    return out


CASES = HAND_PICKED + random_cases(24, seed=1234)
BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


def case(name: str) -> Case:
    return BY_NAME[name]

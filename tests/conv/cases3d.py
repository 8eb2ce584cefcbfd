"""conv3d geometry cases shared by the volume kernel, op and planner tests: named awkward ones with the paths
the planner takes for them (forward, grad-input, grad-weight, in float32), plus seeded random ones. Tests look
cases up by name (``case3d("...")``), never by position. Geometry tuples are (depth, height, width)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medkern._geometry import ConvParams, conv_out_size


@dataclass(frozen=True)
class VolumeCase:
    N: int
    C: int
    size: tuple  # D, H, W
    K: int
    kernel: tuple  # T, R, S
    stride: tuple = (1, 1, 1)
    padding: tuple = (0, 0, 0)  # leading
    extra: tuple = (0, 0, 0)  # trailing padding beyond the leading one: torch's 'same' with even kernels
    dilation: tuple = (1, 1, 1)
    groups: int = 1
    bias: bool = True
    name: str = ""
    plans: tuple = ()  # (forward, grad_input, grad_weight) as medkern.ops.conv_plan names them; () when random

    @property
    def params(self) -> ConvParams:
        return ConvParams(self.stride, self.padding, self.dilation, self.groups)

    @property
    def out_size(self):
        return tuple(conv_out_size(n, k, s, 2 * p + e, d) for n, k, s, p, e, d in
                     zip(self.size, self.kernel, self.stride, self.padding, self.extra, self.dilation))

    @property
    def input_shape(self):
        return (self.N, self.C, *self.size)

    @property
    def weight_shape(self):
        return (self.K, self.C // self.groups, *self.kernel)

    def tensors(self, dtype, device="cpu", seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(self.input_shape, generator=g, dtype=torch.float64)
        w = torch.randn(self.weight_shape, generator=g, dtype=torch.float64)
        b = torch.randn(self.K, generator=g, dtype=torch.float64) if self.bias else None
        dy = torch.randn((self.N, self.K, *self.out_size), generator=g, dtype=torch.float64)
        return tuple(None if t is None else t.to(dtype=dtype, device=device) for t in (x, w, b, dy))

    def id(self) -> str:
        return self.name


def reference3d(case: VolumeCase, x, w, b, dy):
    """float64 torch: output, grad_input, grad_weight, grad_bias."""
    x = x.detach().double().cpu().requires_grad_()
    w = w.detach().double().cpu().requires_grad_()
    b = None if b is None else b.detach().double().cpu().requires_grad_()
    pads = []
    for p, e in reversed(list(zip(case.padding, case.extra))):
        pads += [p, p + e]
    y = F.conv3d(F.pad(x, pads), w, b, case.stride, 0, case.dilation, case.groups)
    grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], dy.double().cpu())
    return y.detach(), grads[0], grads[1], (grads[2] if b is not None else None)


HAND_PICKED = [
    VolumeCase(2, 3, (5, 6, 7), 4, (3, 3, 3), padding=(1, 1, 1), name="basic_3x3x3",
               plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    VolumeCase(1, 1, (1, 1, 1), 1, (1, 1, 1), bias=False, name="all_ones",  # depth 1: the 2-d paths apply
               plans=("gemm_across_images", "as_forward>gemm_across_images", "grid")),
    VolumeCase(1, 4, (7, 5, 9), 6, (2, 3, 1), stride=(2, 1, 3), padding=(1, 0, 0), dilation=(1, 2, 1), groups=2,
               name="anisotropic_strided_dilated_grouped",
               plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
    VolumeCase(3, 2, (4, 4, 4), 5, (3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1), name="stride2_small",
               plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
    VolumeCase(2, 5, (6, 7, 5), 3, (2, 4, 2), padding=(0, 1, 0), extra=(1, 1, 1), name="same_even_kernel",
               plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    VolumeCase(2, 8, (9, 9, 9), 8, (3, 3, 3), padding=(2, 2, 2), dilation=(2, 2, 2), name="dilated_3x3x3",
               plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    # A thin slab: depth 3 with a 1-deep kernel, and a 2-d shape run through the volume path (depth 1).
    VolumeCase(1, 3, (3, 40, 40), 4, (1, 3, 3), padding=(0, 1, 1), name="slab_1x3x3",
               plans=("gemm", "as_forward>gemm", "gemm")),
    VolumeCase(2, 3, (1, 9, 11), 5, (1, 3, 3), padding=(0, 1, 1), name="depth_one",
               plans=("grid", "as_forward>few_outputs", "grid")),
    # One image of 12^3 positions: the per-image GEMM (too few channels for Winograd), with a reduction longer
    # than one KC block (12*27).
    VolumeCase(1, 12, (12, 12, 12), 32, (3, 3, 3), padding=(1, 1, 1), name="per_image_gemm_long_reduction",
               plans=("gemm", "as_forward>gemm", "gemm")),
    # F(2x2x2, 3x3x3): enough channels and positions; odd extents leave partial tiles on every axis.
    VolumeCase(2, 16, (9, 11, 13), 20, (3, 3, 3), padding=(1, 1, 1), name="winograd_3x3x3",
               plans=("winograd3d_f2x3", "as_forward>winograd3d_f2x3", "gemm_across_images")),
    # The grad-weight's F(2x2x2, 3x3x3) needs 32 channels a side; channel counts that fill no vector, 300 tiles.
    VolumeCase(2, 33, (9, 10, 11), 40, (3, 3, 3), padding=(1, 1, 1), name="grad_weight_winograd_3x3x3",
               plans=("gemm_across_images", "as_forward>gemm_across_images", "winograd3d_f2x3")),
    VolumeCase(2, 6, (5, 5, 5), 6, (3, 3, 3), stride=(1, 2, 1), padding=(1, 1, 1), groups=6, name="depthwise",
               plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
    VolumeCase(1, 3, (7, 8, 9), 40, (1, 1, 1), name="pointwise_40_outputs",
               plans=("gemm", "as_forward>gemm", "gemm")),
    VolumeCase(2, 2, (8, 7, 9), 3, (2, 2, 2), stride=(3, 3, 3), name="stride_past_kernel",
               plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
    VolumeCase(1, 2, (3, 4, 3), 3, (5, 3, 5), padding=(2, 1, 2), name="kernel_deeper_than_input",
               plans=("gemm_across_images", "as_forward>gemm_across_images", "gemm_across_images")),
    VolumeCase(2, 3, (4, 5, 6), 2, (1, 1, 1), padding=(1, 0, 1), name="padding_past_kernel_reach",
               plans=("gemm_across_images", "gemm_col2im", "gemm_across_images")),
]


def random_cases3d(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        groups = rng.choice([1, 1, 2])
        kernel = tuple(rng.randint(1, 3) for _ in range(3))
        dilation = tuple(rng.randint(1, 2) for _ in range(3))
        c = VolumeCase(N=rng.randint(1, 2), C=groups * rng.randint(1, 3), size=tuple(rng.randint(1, 9) for _ in range(3)),
                       K=groups * rng.randint(1, 5), kernel=kernel, stride=tuple(rng.randint(1, 2) for _ in range(3)),
                       padding=tuple(rng.randint(0, k // 2 * d + 1) for k, d in zip(kernel, dilation)),
                       extra=tuple(rng.randint(0, 1) for _ in range(3)), dilation=dilation, groups=groups,
                       bias=rng.random() < 0.7, name=f"random{seed}_{len(out)}")
        if min(c.out_size) >= 1:
            out.append(c)
    return out


CASES3D = HAND_PICKED + random_cases3d(12, seed=4321)
BY_NAME = {c.name: c for c in CASES3D}
assert len(BY_NAME) == len(CASES3D), "case names must be unique"


def case3d(name: str) -> VolumeCase:
    return BY_NAME[name]

"""Pooling cases shared by the kernel and op tests: hand-picked awkward ones and seeded random ones."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from medkern._geometry import PoolParams, pool_out_size


def awkward_input(shape, dtype, device="cpu", seed=0, specials=True):
    """Random values with many ties and, with `specials`, a few NaNs and infinities."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    # ties: a coarse grid of values makes equal maxima common
    x = torch.where(torch.rand(x.shape, generator=g) < 0.3, x.round(), x)
    if specials and x.numel() > 8:
        flat = x.view(-1)
        flat[torch.randint(0, flat.numel(), (3,), generator=g)] = float("nan")
        flat[torch.randint(0, flat.numel(), (3,), generator=g)] = float("-inf")
        flat[torch.randint(0, flat.numel(), (2,), generator=g)] = float("inf")
    return x.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class PoolCase:
    N: int
    C: int
    H: int
    W: int
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    ceil_mode: bool = False

    @property
    def params(self) -> PoolParams:
        return PoolParams(self.kernel, self.stride, self.padding, self.dilation)

    @property
    def out_hw(self):
        return tuple(pool_out_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                     zip((self.H, self.W), self.kernel, self.stride, self.padding, self.dilation))

    def input(self, dtype, device="cpu", seed=0, specials=True):
        return awkward_input((self.N, self.C, self.H, self.W), dtype, device, seed, specials)

    def fits_avg(self) -> bool:
        return self.dilation == (1, 1) and all(p <= k // 2 for p, k in zip(self.padding, self.kernel))

    def id(self) -> str:
        return (f"{self.N}x{self.C}x{self.H}x{self.W}-k{self.kernel}-s{self.stride}-p{self.padding}-d{self.dilation}"
                f"{'-ceil' if self.ceil_mode else ''}")


HAND_PICKED = [
    PoolCase(2, 3, 8, 8, (2, 2), (2, 2)),
    PoolCase(2, 3, 9, 11, (3, 3), (2, 2), (1, 1)),
    PoolCase(2, 3, 9, 11, (3, 3), (2, 2), (1, 1), ceil_mode=True),
    PoolCase(1, 2, 5, 5, (2, 2), (2, 2), ceil_mode=True),  # last window hangs over the edge
    PoolCase(1, 1, 7, 13, (2, 4), (1, 3), (1, 2), (2, 1), ceil_mode=True),
    PoolCase(3, 2, 1, 17, (1, 3), (1, 2), (0, 1)),  # the 1-D case
    PoolCase(1, 4, 6, 6, (6, 6), (1, 1)),  # one window covers the plane
    PoolCase(2, 2, 12, 10, (3, 2), (3, 3), (1, 1), (1, 2)),
    PoolCase(1, 1, 33, 65, (2, 2), (2, 2)),  # widths past one vector, odd
    PoolCase(2, 3, 37, 42, (2, 2), (2, 2)),  # the 2x2 tiling path: a vector and a tail per row, odd height
    PoolCase(2, 3, 35, 70, (3, 3), (2, 2), (1, 1)),  # the stride-2 row path: vectors carrying a lane, a tail
    PoolCase(1, 2, 36, 69, (3, 3), (2, 2), (1, 1), ceil_mode=True),
    PoolCase(1, 2, 6, 40, (2, 3), (1, 2), (0, 1)),  # stride-2 rows, overlapping window rows
    PoolCase(2, 2, 10, 10, (1, 1), (3, 3)),  # stride larger than the kernel
]


def random_cases(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = (rng.randint(1, 4), rng.randint(1, 4))
        d = (rng.randint(1, 2), rng.randint(1, 2)) if rng.random() < 0.4 else (1, 1)
        p = tuple(rng.randint(0, ((kk - 1) * dd + 1) // 2) for kk, dd in zip(k, d))
        c = PoolCase(rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 19), rng.randint(1, 19), k,
                     (rng.randint(1, 3), rng.randint(1, 3)), p, d, rng.random() < 0.5)
        if min(c.out_hw) >= 1:
            out.append(c)
    return out


CASES = HAND_PICKED + random_cases(20, seed=99)
ADAPTIVE = [((2, 3, 9, 11), (4, 3)), ((1, 2, 7, 7), (1, 1)), ((2, 2, 5, 13), (5, 4)), ((1, 3, 4, 6), (7, 9)),
            ((2, 2, 1, 20), (1, 6)), ((1, 1, 64, 64), (1, 1))]


@dataclass(frozen=True)
class VolumeCase:
    """A 3-d pooling case: (N, C, D, H, W) and per-axis (depth, height, width) geometry."""
    shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0, 0)
    dilation: tuple = (1, 1, 1)
    ceil_mode: bool = False
    name: str = ""

    @property
    def params(self) -> PoolParams:
        return PoolParams(self.kernel, self.stride, self.padding, self.dilation)

    @property
    def out_size(self):
        return tuple(pool_out_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                     zip(self.shape[2:], self.kernel, self.stride, self.padding, self.dilation))

    def input(self, dtype, device="cpu", seed=0, specials=True):
        return awkward_input(self.shape, dtype, device, seed, specials)

    def fits_avg(self) -> bool:
        """torch's avg_pool3d has no dilation and wants every axis at least as long as the kernel."""
        return self.dilation == (1, 1, 1) and all(n >= k for n, k in zip(self.shape[2:], self.kernel))

    def torch_kwargs(self, with_dilation=True) -> dict:
        kw = dict(kernel_size=self.kernel, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode)
        return {**kw, "dilation": self.dilation} if with_dilation else kw

    def id(self) -> str:
        return self.name or ("x".join(map(str, self.shape)) + f"-k{self.kernel}-s{self.stride}-p{self.padding}"
                             f"-d{self.dilation}{'-ceil' if self.ceil_mode else ''}").replace(" ", "")


VOLUME_HAND_PICKED = [
    VolumeCase((2, 3, 5, 6, 7), (2, 2, 2), (2, 2, 2), name="k2_s2_odd_sizes"),
    VolumeCase((1, 2, 5, 7, 6), (3, 3, 3), (2, 2, 2), (1, 1, 1), ceil_mode=True, name="k3_s2_p1_ceil"),
    VolumeCase((1, 2, 5, 5, 5), (2, 2, 2), (2, 2, 2), ceil_mode=True, name="ceil_edge_windows"),
    VolumeCase((1, 2, 7, 6, 9), (2, 2, 3), (1, 2, 2), (1, 0, 1), (2, 2, 1), ceil_mode=True, name="dilated_ceil"),
    VolumeCase((2, 2, 7, 7, 7), (1, 1, 1), (3, 3, 3), name="stride_over_kernel"),
    VolumeCase((2, 2, 7, 8, 6), (2, 3, 2), (3, 4, 3), (1, 1, 0), name="stride_over_kernel_padded"),
    VolumeCase((2, 3, 1, 8, 9), (1, 3, 3), (1, 2, 2), (0, 1, 1), name="one_deep"),
    VolumeCase((1, 2, 6, 1, 1), (3, 1, 1), (2, 1, 1), (1, 0, 0), name="one_wide_rows_and_columns"),
    VolumeCase((1, 3, 3, 4, 5), (3, 4, 5), (1, 1, 1), name="window_covers_volume"),
    VolumeCase((2, 2, 6, 9, 4), (2, 3, 2), (3, 2, 1), (1, 1, 0), name="mixed_axes"),
    # Rows long enough for the vector loops over whole windows (strides 1 and 2 compiled in, 3 at run time),
    # beside edge windows cut by padding, ceil mode or dilation.
    VolumeCase((2, 2, 3, 4, 45), (2, 2, 2), (2, 2, 2), name="wide_rows_k2_s2"),
    VolumeCase((1, 2, 4, 5, 70), (3, 3, 3), (1, 2, 2), (1, 1, 1), ceil_mode=True, name="wide_rows_k3_s2_p1_ceil"),
    VolumeCase((1, 2, 3, 3, 50), (2, 2, 3), (1, 1, 1), (0, 0, 1), (1, 1, 2), name="wide_rows_dilated_s1"),
    VolumeCase((1, 1, 3, 3, 61), (1, 2, 3), (1, 1, 3), (0, 1, 1), name="wide_rows_s3"),
]


def random_volume_cases(n: int, seed: int):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = tuple(rng.randint(1, 3) for _ in range(3))
        d = tuple(rng.randint(1, 2) for _ in range(3)) if rng.random() < 0.4 else (1, 1, 1)
        c = VolumeCase((rng.randint(1, 2), rng.randint(1, 3), *(rng.randint(1, 8) for _ in range(3))), k,
                       tuple(rng.randint(1, 3) for _ in range(3)), tuple(rng.randint(0, kk // 2) for kk in k), d,
                       rng.random() < 0.5)
        if min(c.out_size) >= 1:
            out.append(c)
    return out


VOLUME_CASES = VOLUME_HAND_PICKED + random_volume_cases(8, seed=21)
# (input shape, output_size): output sizes above, equal to and below the input's, 1-wide axes
VOLUME_ADAPTIVE = [((2, 3, 5, 7, 6), (2, 3, 4)), ((1, 2, 4, 4, 4), (1, 1, 1)), ((1, 2, 3, 5, 7), (5, 4, 9)),
                   ((2, 2, 1, 6, 9), (1, 4, 5)), ((1, 1, 9, 1, 4), (4, 1, 3))]

"""Pooling benchmark cases (issue targets on 32x64x64x64 float32, and volumes). Pooling moves bytes and does
almost no arithmetic, so the floor that matters is bytes over the copy bandwidth."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops


@dataclass(frozen=True)
class PoolCase:
    name: str
    kind: str  # "max", "avg", "gap" (global average), "max_fwd_bwd"
    N: int = 32
    C: int = 64
    H: int = 64
    kernel: int = 2
    stride: int = 2
    padding: int = 0
    spatial: int = 2  # 3: an H x H x H volume

    @property
    def op(self) -> str:
        name = {"max": "max_pool", "avg": "avg_pool", "gap": "adaptive_avg_pool", "max_fwd_bwd": "max_pool"}[self.kind]
        return f"{name}{self.spatial}d" + ("_fwd_bwd" if self.kind == "max_fwd_bwd" else "")

    @property
    def shape(self) -> str:
        size = "x".join([str(self.H)] * self.spatial)
        if self.kind == "gap":
            return f"{self.N}x{self.C}x{size} -> 1"
        return f"{self.N}x{self.C}x{size} k{self.kernel} s{self.stride} p{self.padding}"

    @property
    def out_hw(self) -> int:
        return 1 if self.kind == "gap" else (self.H + 2 * self.padding - self.kernel) // self.stride + 1

    def flops(self) -> float:
        return 0.0

    def bytes(self, itemsize: int) -> float:
        planes = self.N * self.C
        x, y = planes * self.H ** self.spatial * itemsize, planes * self.out_hw ** self.spatial * itemsize
        if self.kind == "max_fwd_bwd":  # fwd: read x, write y and int64 indices; bwd: read dy, indices, write dx
            idx = planes * self.out_hw ** self.spatial * 8
            return (x + y + idx) + (y + idx + x)
        return x + y

    def build(self, device: str, dtype: torch.dtype):
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(self.N, self.C, *(self.H,) * self.spatial, generator=g, dtype=dtype).to(device)
        k, s, p = self.kernel, self.stride, self.padding
        d = self.spatial
        if self.kind == "max_fwd_bwd":
            x.requires_grad_(True)
            gy = torch.randn(self.N, self.C, *(self.out_hw,) * d, generator=g, dtype=dtype).to(device)

            def run(f):
                return lambda: torch.autograd.grad(f(x, k, s, p), x, gy)
            return run(getattr(ops, f"max_pool{d}d")), run(getattr(F, f"max_pool{d}d"))

        name = {"max": "max_pool", "avg": "avg_pool", "gap": "adaptive_avg_pool"}[self.kind] + f"{d}d"
        f_ours, f_torch = getattr(ops, name), getattr(F, name)
        args = (1,) if self.kind == "gap" else (k, s, p)

        def run(f):
            def call():
                with torch.no_grad():
                    return f(x, *args)
            return call
        return run(f_ours), run(f_torch)


CASES = [
    PoolCase("maxpool_k2s2", "max"),
    PoolCase("maxpool_k3s2p1", "max", kernel=3, padding=1),
    PoolCase("avgpool_k2s2", "avg"),
    PoolCase("maxpool_k2s2_fwd_bwd", "max_fwd_bwd"),
    PoolCase("global_avgpool", "gap"),
    # Volumes: 8 volumes of 64 channels at 28^3, a 3-d ResNet's first stage.
    PoolCase("maxpool3d_k3s2p1", "max", N=8, H=28, kernel=3, padding=1, spatial=3),
    PoolCase("maxpool3d_k2s2_fwd_bwd", "max_fwd_bwd", N=8, H=28, spatial=3),
    PoolCase("avgpool3d_k2s2", "avg", N=8, H=28, spatial=3),
    PoolCase("global_avgpool3d", "gap", N=8, H=28, spatial=3),
]

"""Pooling benchmark cases (issue targets on 32x64x64x64 float32). Pooling moves bytes and does almost
no arithmetic, so the floor that matters is bytes over the copy bandwidth."""
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

    @property
    def op(self) -> str:
        return {"max": "max_pool2d", "avg": "avg_pool2d", "gap": "adaptive_avg_pool2d",
                "max_fwd_bwd": "max_pool2d_fwd_bwd"}[self.kind]

    @property
    def shape(self) -> str:
        if self.kind == "gap":
            return f"{self.N}x{self.C}x{self.H}x{self.H} -> 1x1"
        return f"{self.N}x{self.C}x{self.H}x{self.H} k{self.kernel} s{self.stride} p{self.padding}"

    @property
    def out_hw(self) -> int:
        return 1 if self.kind == "gap" else (self.H + 2 * self.padding - self.kernel) // self.stride + 1

    def flops(self) -> float:
        return 0.0

    def bytes(self, itemsize: int) -> float:
        planes = self.N * self.C
        x, y = planes * self.H * self.H * itemsize, planes * self.out_hw ** 2 * itemsize
        if self.kind == "max_fwd_bwd":  # fwd: read x, write y and int64 indices; bwd: read dy, indices, write dx
            idx = planes * self.out_hw ** 2 * 8
            return (x + y + idx) + (y + idx + x)
        return x + y

    def build(self, device: str, dtype: torch.dtype):
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(self.N, self.C, self.H, self.H, generator=g, dtype=dtype).to(device)
        k, s, p = self.kernel, self.stride, self.padding
        if self.kind == "max_fwd_bwd":
            x.requires_grad_(True)
            gy = torch.randn(self.N, self.C, self.out_hw, self.out_hw, generator=g, dtype=dtype).to(device)

            def run(f):
                return lambda: torch.autograd.grad(f(x, k, s, p), x, gy)
            return run(ops.max_pool2d), run(F.max_pool2d)

        f_ours, f_torch = {"max": (ops.max_pool2d, F.max_pool2d), "avg": (ops.avg_pool2d, F.avg_pool2d),
                           "gap": (ops.adaptive_avg_pool2d, F.adaptive_avg_pool2d)}[self.kind]
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
]

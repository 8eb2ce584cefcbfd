"""conv2d benchmark cases: the shapes of the issue's targets plus the per-call overhead case."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops


@dataclass(frozen=True)
class ConvCase:
    name: str
    N: int
    C: int
    H: int
    K: int
    R: int
    stride: int = 1
    padding: int = 1
    backward: bool = False

    @property
    def op(self) -> str:
        return "conv2d_fwd_bwd" if self.backward else "conv2d"

    @property
    def shape(self) -> str:
        return f"{self.N}x{self.C}x{self.H}x{self.H}->{self.K} k{self.R} s{self.stride} p{self.padding}"

    @property
    def out_hw(self) -> int:
        return (self.H + 2 * self.padding - self.R) // self.stride + 1

    def flops(self) -> float:
        f = 2.0 * self.N * self.K * self.C * self.R * self.R * self.out_hw ** 2
        return 3 * f if self.backward else f

    def bytes(self, itemsize: int) -> float:
        x = self.N * self.C * self.H * self.H
        y = self.N * self.K * self.out_hw ** 2
        w = self.K * self.C * self.R * self.R
        moved = x + y + w if not self.backward else 2 * (x + y + w) + x + y  # fwd, then read dy,x,w; write dx,dw
        return moved * itemsize

    def build(self, device: str, dtype: torch.dtype):
        """(medkern callable, torch callable) over the same tensors."""
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(self.N, self.C, self.H, self.H, generator=g, dtype=dtype).to(device)
        w = (torch.randn(self.K, self.C, self.R, self.R, generator=g, dtype=dtype) * 0.1).to(device)
        b = torch.randn(self.K, generator=g, dtype=dtype).to(device)
        s, p = self.stride, self.padding
        if not self.backward:
            def run(f):
                def call():
                    with torch.no_grad():
                        return f(x, w, b, s, p)
                return call
            return run(ops.conv2d), run(F.conv2d)
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        gy = torch.randn(self.N, self.K, self.out_hw, self.out_hw, generator=g, dtype=dtype).to(device)

        def run(f):
            def call():
                y = f(x, w, b, s, p)
                return torch.autograd.grad(y, (x, w, b), gy)
            return call
        return run(ops.conv2d), run(F.conv2d)


CASES = [
    ConvCase("stem_3to32", 32, 3, 128, 32, 3),
    ConvCase("conv3x3_32to64", 32, 32, 64, 64, 3),
    ConvCase("conv3x3_64to128", 32, 64, 32, 128, 3),
    ConvCase("conv3x3_32to64_fwd_bwd", 32, 32, 64, 64, 3, backward=True),
    ConvCase("latency_stem_k7s2", 1, 3, 224, 64, 7, stride=2, padding=3),
    ConvCase("latency_conv3x3_64", 1, 64, 56, 64, 3),
]
# A shape so small that the call overhead dominates: what the no-grad fast path is for.
OVERHEAD_CASE = ConvCase("overhead_tiny", 1, 4, 8, 4, 3)

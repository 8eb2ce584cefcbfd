"""Convolution benchmark cases: the shapes of the issues' targets (2-d, 1-d, transposed and 3-d) plus the
per-call overhead case."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import ops


@dataclass(frozen=True)
class ConvCase:
    """One convolution benchmark. ``variant``: "conv2d"; "relu" (the fused epilogue against torch's conv2d
    followed by relu); "transpose" (conv_transpose2d, C -> K channels, H the input size); "conv1d" (H is
    the length L); "conv3d" (an H x H x H volume, an R x R x R kernel)."""
    name: str
    N: int
    C: int
    H: int
    K: int
    R: int
    stride: int = 1
    padding: int = 1
    backward: bool = False
    variant: str = "conv2d"

    @property
    def op(self) -> str:
        base = {"conv2d": "conv2d", "relu": "conv2d_relu", "transpose": "conv_transpose2d", "conv1d": "conv1d",
                "conv3d": "conv3d"}
        return base[self.variant] + ("_fwd_bwd" if self.backward else "")

    @property
    def spatial(self) -> int:
        return {"conv1d": 1, "conv3d": 3}.get(self.variant, 2)

    @property
    def shape(self) -> str:
        size = "x".join([str(self.H)] * self.spatial)
        return f"{self.N}x{self.C}x{size}->{self.K} k{self.R} s{self.stride} p{self.padding}"

    @property
    def out_hw(self) -> int:
        if self.variant == "transpose":
            return (self.H - 1) * self.stride - 2 * self.padding + self.R
        return (self.H + 2 * self.padding - self.R) // self.stride + 1

    def flops(self) -> float:
        taps = self.R ** self.spatial
        positions = (self.H if self.variant == "transpose" else self.out_hw) ** self.spatial
        f = 2.0 * self.N * self.K * self.C * taps * positions
        return 3 * f if self.backward else f

    def bytes(self, itemsize: int) -> float:
        x = self.N * self.C * self.H ** self.spatial
        y = self.N * self.K * self.out_hw ** self.spatial
        w = self.K * self.C * self.R ** self.spatial
        moved = x + y + w if not self.backward else 2 * (x + y + w) + x + y  # fwd, then read dy,x,w; write dx,dw
        return moved * itemsize

    def _functions(self):
        """(medkern, torch) callables of (x, w, b)."""
        s, p = self.stride, self.padding
        if self.variant == "relu":
            return (lambda x, w, b: ops.conv2d(x, w, b, s, p, activation="relu"),
                    lambda x, w, b: F.relu(F.conv2d(x, w, b, s, p)))
        if self.variant == "transpose":
            return (lambda x, w, b: ops.conv_transpose2d(x, w, b, s, p),
                    lambda x, w, b: F.conv_transpose2d(x, w, b, s, p))
        if self.variant == "conv1d":
            return lambda x, w, b: ops.conv1d(x, w, b, s, p), lambda x, w, b: F.conv1d(x, w, b, s, p)
        if self.variant == "conv3d":
            return lambda x, w, b: ops.conv3d(x, w, b, s, p), lambda x, w, b: F.conv3d(x, w, b, s, p)
        return lambda x, w, b: ops.conv2d(x, w, b, s, p), lambda x, w, b: F.conv2d(x, w, b, s, p)

    def build(self, device: str, dtype: torch.dtype):
        """(medkern callable, torch callable) over the same tensors."""
        g = torch.Generator(device="cpu").manual_seed(0)
        spatial = (self.H,) * self.spatial
        kernel = (self.R,) * self.spatial
        x = torch.randn(self.N, self.C, *spatial, generator=g, dtype=dtype).to(device)
        w_shape = (self.C, self.K, *kernel) if self.variant == "transpose" else (self.K, self.C, *kernel)
        w = (torch.randn(*w_shape, generator=g, dtype=dtype) * 0.1).to(device)
        b = torch.randn(self.K, generator=g, dtype=dtype).to(device)
        medkern_fn, torch_fn = self._functions()
        if not self.backward:
            def run(f):
                def call():
                    with torch.no_grad():
                        return f(x, w, b)
                return call
            return run(medkern_fn), run(torch_fn)
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        gy = torch.randn(self.N, self.K, *(self.out_hw,) * self.spatial, generator=g, dtype=dtype).to(device)

        def run(f):
            def call():
                return torch.autograd.grad(f(x, w, b), (x, w, b), gy)
            return call
        return run(medkern_fn), run(torch_fn)


CASES = [
    ConvCase("stem_3to32", 32, 3, 128, 32, 3),
    ConvCase("conv3x3_32to64", 32, 32, 64, 64, 3),
    ConvCase("conv3x3_64to128", 32, 64, 32, 128, 3),
    ConvCase("conv3x3_32to64_fwd_bwd", 32, 32, 64, 64, 3, backward=True),
    ConvCase("conv3x3_32to64_relu", 32, 32, 64, 64, 3, variant="relu"),
    ConvCase("latency_stem_k7s2", 1, 3, 224, 64, 7, stride=2, padding=3),
    ConvCase("latency_conv3x3_64", 1, 64, 56, 64, 3),
    ConvCase("ecg_conv1d_k7_fwd_bwd", 64, 32, 1000, 32, 7, padding=3, backward=True, variant="conv1d"),
    ConvCase("dcgan_up_64to32", 32, 64, 16, 32, 4, stride=2, padding=1, variant="transpose"),
    ConvCase("dcgan_up_64to32_fwd_bwd", 32, 64, 16, 32, 4, stride=2, padding=1, backward=True, variant="transpose"),
    # MONAI's 3-d ResNet-18 on 28^3 volumes (stride-1 stem): its first and third stages, batch 8 and batch 1.
    ConvCase("conv3d_3x3x3_64_28", 8, 64, 28, 64, 3, variant="conv3d"),
    ConvCase("conv3d_3x3x3_64_28_fwd_bwd", 8, 64, 28, 64, 3, backward=True, variant="conv3d"),
    ConvCase("conv3d_3x3x3_256_7", 8, 256, 7, 256, 3, variant="conv3d"),
    ConvCase("latency_conv3d_3x3x3_64_28", 1, 64, 28, 64, 3, variant="conv3d"),
]
# A shape so small that the call overhead dominates: what the no-grad fast path is for.
OVERHEAD_CASE = ConvCase("overhead_tiny", 1, 4, 8, 4, 3)
# The case whose speed-up from one to two threads the bench reports.
SCALING_CASE = CASES[1]

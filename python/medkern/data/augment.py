"""Random training-time augmentation of one image or one signal, with torch ops.

With ``seed=None`` the draws come from torch's global generator, which a DataLoader seeds differently in
each worker; a seed gives a private generator (reproducible, but every worker copy repeats the same draws).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _pixel_centres(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, x) of each pixel centre in grid_sample's [-1, 1] coordinates (align_corners=False)."""
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    return torch.meshgrid(ys, xs, indexing="ij")


def rotation_grid(cos: float, sin: float, tx: float, ty: float, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid`` of [[cos, -sin, tx], [sin, cos, ty]] for one (h, w) image, with elementwise ops:
    affine_grid's batched matmul goes through BLAS, whose thread pool costs milliseconds per small image
    on a busy machine."""
    gy, gx = _pixel_centres(h, w)
    return torch.stack([cos * gx - sin * gy + tx, sin * gx + cos * gy + ty], dim=-1)[None]


class _Random:
    def __init__(self, seed):
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=self.generator).item()

    def coin(self) -> bool:
        return torch.rand((), generator=self.generator).item() < 0.5


def _non_negative(**values):
    for name, v in values.items():
        if not float(v) >= 0.0:
            raise ValueError(f"{name} must be >= 0, got {v}")


class ImageAugment(_Random):
    """Callable on one image ``(C, H, W)`` in [0, 1]: a random horizontal flip (and vertical with ``vflip``),
    rotation within +-``rotate_deg`` and shift within +-``shift`` of the size (one bilinear resampling,
    edges repeated), and brightness/contrast jitter of up to +-``intensity``; the result is clamped to [0, 1].
    Vertical flips are off by default: in ultrasound and chest images up and down are not interchangeable."""

    def __init__(self, flip=True, rotate_deg=10.0, shift=0.1, intensity=0.1, seed=None, vflip=False):
        _non_negative(rotate_deg=rotate_deg, shift=shift, intensity=intensity)
        super().__init__(seed)
        self.flip, self.vflip = bool(flip), bool(vflip)
        self.rotate_deg, self.shift, self.intensity = float(rotate_deg), float(shift), float(intensity)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            raise ValueError(f"image must be a (C, H, W) tensor, got "
                             f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
        out = image
        if self.flip and self.coin():
            out = out.flip(-1)
        if self.vflip and self.coin():
            out = out.flip(-2)
        if self.rotate_deg > 0 or self.shift > 0:
            a = math.radians(self.uniform(-self.rotate_deg, self.rotate_deg))
            # Grid coordinates run over [-1, 1], so a shift of s of the size is 2 s.
            tx, ty = (2 * self.uniform(-self.shift, self.shift) for _ in range(2))
            grid = rotation_grid(math.cos(a), math.sin(a), tx, ty, out.shape[-2], out.shape[-1]).to(out.dtype)
            out = F.grid_sample(out[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if self.intensity > 0:
            contrast = 1.0 + self.uniform(-self.intensity, self.intensity)
            brightness = self.uniform(-self.intensity, self.intensity)
            mean = out.mean()
            out = (out - mean) * contrast + mean + brightness
        return out.clamp(0.0, 1.0)


class SignalAugment(_Random):
    """Callable on one signal ``(C, L)``: amplitude scaling by a factor in 1 +- ``scale``, Gaussian noise of
    ``noise`` times each channel's standard deviation, and a time shift of up to +-``shift`` of the length
    (the vacated end repeats the edge sample rather than wrapping around)."""

    def __init__(self, noise=0.02, scale=0.1, shift=0.1, seed=None):
        _non_negative(noise=noise, scale=scale, shift=shift)
        super().__init__(seed)
        self.noise, self.scale, self.shift = float(noise), float(scale), float(shift)

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        if not isinstance(signal, torch.Tensor) or signal.dim() != 2:
            raise ValueError(f"signal must be a (C, L) tensor, got "
                             f"{tuple(signal.shape) if isinstance(signal, torch.Tensor) else type(signal).__name__}")
        out = signal * (1.0 + self.uniform(-self.scale, self.scale))
        if self.noise > 0:
            std = signal.std(dim=-1, keepdim=True) if signal.shape[-1] > 1 else torch.zeros_like(signal)
            out = out + self.noise * std * torch.randn(out.shape, generator=self.generator, dtype=out.dtype)
        length = out.shape[-1]
        k = int(round(self.uniform(-self.shift, self.shift) * length))
        k = max(-(length - 1), min(length - 1, k))
        if k > 0:
            out = torch.cat([out[:, :1].expand(-1, k), out[:, :-k]], dim=1)
        elif k < 0:
            out = torch.cat([out[:, -k:], out[:, -1:].expand(-1, -k)], dim=1)
        return out

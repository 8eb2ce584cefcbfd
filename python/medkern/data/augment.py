"""Random training-time augmentation of one image, volume or signal, with torch ops.

With ``seed=None`` the draws come from torch's global generator, which a DataLoader seeds differently in
each worker; a seed gives a private generator (reproducible, but every worker copy repeats the same draws).
"""
from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _centres(shape: tuple) -> tuple[torch.Tensor, ...]:
    """Each pixel (voxel) centre of an input of spatial ``shape`` ((H, W) or (D, H, W)) in grid_sample's
    [-1, 1] coordinates (align_corners=False), one tensor per coordinate in grid_sample's (x, y[, z]) order,
    x along the last axis."""
    axes = [(torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1 for n in shape]
    return tuple(reversed(torch.meshgrid(*axes, indexing="ij")))


def affine_grid(matrix, shift, shape) -> torch.Tensor:
    """``F.affine_grid`` of ``[matrix | shift]`` (rows and shift in (x, y[, z]) order, as plain numbers) for
    one input of spatial ``shape``, with elementwise ops: affine_grid's batched matmul goes through BLAS,
    whose thread pool costs milliseconds per small image on a busy machine."""
    centres = _centres(tuple(shape))
    return torch.stack([sum(m * c for m, c in zip(row, centres)) + t for row, t in zip(matrix, shift)], dim=-1)[None]


def rotation(angles) -> list[list[float]]:
    """The rotation matrix, as nested lists, turning by each of ``angles`` (radians) in turn in the planes
    of ``itertools.combinations(range(dims), 2)``: one angle in 2-D, three (about z, y, x) in 3-D."""
    dims = {1: 2, 3: 3}[len(angles)]
    r = [[float(i == j) for j in range(dims)] for i in range(dims)]
    for (i, j), a in zip(itertools.combinations(range(dims), 2), angles):
        g = [[float(p == q) for q in range(dims)] for p in range(dims)]
        g[i][i], g[i][j], g[j][i], g[j][j] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
        r = [[sum(g[p][k] * r[k][q] for k in range(dims)) for q in range(dims)] for p in range(dims)]
    return r


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


class _SpatialAugment(_Random):
    """Callable on one item ``(C, *spatial)`` in [0, 1] with ``DIMS`` spatial axes: a random flip of each of
    ``flip_axes``, rotation within +-``rotate_deg`` in each plane and shift within +-``shift`` of the size
    along each axis (one bilinear resampling, edges repeated), and brightness/contrast jitter of up to
    +-``intensity``; the result is clamped to [0, 1]."""

    DIMS: int
    SHAPE: str

    def __init__(self, flip_axes, rotate_deg, shift, intensity, seed):
        _non_negative(rotate_deg=rotate_deg, shift=shift, intensity=intensity)
        super().__init__(seed)
        self.flip_axes = tuple(flip_axes)
        self.rotate_deg, self.shift, self.intensity = float(rotate_deg), float(shift), float(intensity)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != self.DIMS + 1:
            raise ValueError(f"input must be a {self.SHAPE} tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        out = x
        for axis in self.flip_axes:
            if self.coin():
                out = out.flip(axis)
        if self.rotate_deg > 0 or self.shift > 0:
            planes = math.comb(self.DIMS, 2)
            angles = [math.radians(self.uniform(-self.rotate_deg, self.rotate_deg)) for _ in range(planes)]
            # Grid coordinates run over [-1, 1], so a shift of s of the size is 2 s.
            shift = [2 * self.uniform(-self.shift, self.shift) for _ in range(self.DIMS)]
            grid = affine_grid(rotation(angles), shift, out.shape[1:]).to(out.dtype)
            out = F.grid_sample(out[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if self.intensity > 0:
            contrast = 1.0 + self.uniform(-self.intensity, self.intensity)
            brightness = self.uniform(-self.intensity, self.intensity)
            mean = out.mean()
            out = (out - mean) * contrast + mean + brightness
        return out.clamp(0.0, 1.0)


class ImageAugment(_SpatialAugment):
    """Callable on one image ``(C, H, W)`` in [0, 1]: a random horizontal flip (and vertical with ``vflip``),
    rotation within +-``rotate_deg`` and shift within +-``shift`` of the size (one bilinear resampling,
    edges repeated), and brightness/contrast jitter of up to +-``intensity``; the result is clamped to [0, 1].
    Vertical flips are off by default: in ultrasound and chest images up and down are not interchangeable."""

    DIMS, SHAPE = 2, "(C, H, W)"

    def __init__(self, flip=True, rotate_deg=10.0, shift=0.1, intensity=0.1, seed=None, vflip=False):
        super().__init__((-1,) * bool(flip) + (-2,) * bool(vflip), rotate_deg, shift, intensity, seed)


class VolumeAugment(_SpatialAugment):
    """Callable on one volume ``(C, D, H, W)`` in [0, 1]: a random flip along each of ``flip`` (spatial axes,
    0 = depth, 1 = height, 2 = width), rotation within +-``rotate_deg`` about each axis and shift within
    +-``shift`` of the size along each (one trilinear resampling, edges repeated), and brightness/contrast
    jitter of up to +-``intensity``; the result is clamped to [0, 1]."""

    DIMS, SHAPE = 3, "(C, D, H, W)"

    def __init__(self, flip=(0, 1, 2), rotate_deg=10.0, shift=0.1, intensity=0.1, seed=None):
        if not set(flip) <= {0, 1, 2}:
            raise ValueError(f"flip must list spatial axes among 0 (depth), 1 (height), 2 (width), got {flip!r}")
        super().__init__(tuple(axis - 3 for axis in flip), rotate_deg, shift, intensity, seed)


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

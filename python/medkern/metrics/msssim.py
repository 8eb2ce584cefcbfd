"""Multi-scale structural similarity (MS-SSIM) of image pairs, and the diversity of a set of generated
images measured with it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .synthesis import checked

SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003, finest first
WINDOW, MIN_WINDOW, SIGMA = 11, 7, 1.5
K1, K2 = 0.01, 0.03


def scales_and_window(height: int, width: int) -> tuple[int, int]:
    """(number of scales, window side) for images of this size: as many of the five scales as keep the
    coarsest scale's side (halved, rounded down, at each scale) at least ``MIN_WINDOW``, and the window
    min(11, that side) made odd. 256 x 256 gives the standard (5, 11); MedMNIST's 28 x 28 gives (3, 7)."""
    side = min(height, width)
    if side < MIN_WINDOW:
        raise ValueError(f"images must be at least {MIN_WINDOW} x {MIN_WINDOW} for MS-SSIM, got {height} x {width}")
    scales = max(m for m in range(1, len(SCALE_WEIGHTS) + 1) if side >> (m - 1) >= MIN_WINDOW)
    window = min(WINDOW, side >> (scales - 1))
    return scales, window - (1 - window % 2)


def _gaussian(window: int) -> torch.Tensor:
    t = torch.arange(window, dtype=torch.float64) - window // 2
    g = torch.exp(-t ** 2 / (2 * SIGMA ** 2))
    return g / g.sum()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float):
    """Mean (over the valid window positions) of SSIM and of its contrast-structure term, (N, C) each."""
    n, c, h, w = x.shape
    # the five local moments blurred together, as one-channel images: two small convolutions per scale
    moments = torch.stack([x, y, x * x, y * y, x * y]).reshape(5 * n * c, 1, h, w)
    blurred = F.conv2d(F.conv2d(moments, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    mu_x, mu_y, xx, yy, xy = blurred.reshape(5, n, c, *blurred.shape[2:])
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    return (luminance * cs).mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def _images(a, name: str) -> torch.Tensor:
    return torch.from_numpy(checked(a, name, ndim=4, min_rows=1))


def ms_ssim(x, y, *, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM (Wang, Simoncelli & Bovik 2003) of each pair of images in two (N, C, H, W) batches, (N,)
    float64: Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, the mean contrast-structure term at each of
    the finer scales and the mean SSIM at the coarsest, weighted by the paper's five exponents; each scale
    halves the image by 2 x 2 averaging (an odd last row/column is dropped). Per channel, then averaged over
    channels.

    The five scales need 256-pixel images (the coarsest is then 16 pixels, room for the 11-pixel window).
    Smaller images (MedMNIST is 28 x 28) use as many scales as keep the coarsest at least 7 pixels and a
    window min(11, coarsest side) made odd (``scales_and_window``), with the weights of those scales rescaled
    to the five weights' total; values at different sizes therefore do not compare. As pytorch-msssim does,
    negative mean terms are clamped to 0 before the fractional power (uncorrelated images give 0)."""
    a, b = _images(x, "x"), _images(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not float(data_range) > 0.0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    scales, window = scales_and_window(a.shape[2], a.shape[3])
    g = _gaussian(window)
    weights = torch.tensor(SCALE_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights * (sum(SCALE_WEIGHTS) / weights.sum())
    terms = []
    for scale in range(scales):
        if scale:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        ssim, cs = _ssim_terms(a, b, g, float(data_range))
        terms.append(ssim if scale == scales - 1 else cs)
    values = torch.stack(terms).clamp_min(0.0) ** weights[:, None, None]
    return values.prod(dim=0).mean(dim=1)


def diversity_ms_ssim(images, *, pairs: int = 1000, seed: int = 0, data_range: float = 1.0,
                      batch: int = 64) -> float:
    """Mean MS-SSIM over ``pairs`` random pairs of distinct images of one (N, C, H, W) set, drawn with
    replacement between pairs. Lower = more diverse; a collapsed generator approaches 1. Compare with the
    value for real images of the same size (MS-SSIM depends on the image size, see ``ms_ssim``)."""
    x = _images(images, "images")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"images needs at least 2 images to form pairs, got {n}")
    if int(pairs) < 1 or int(batch) < 1:
        raise ValueError(f"pairs and batch must be >= 1, got {pairs} and {batch}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, int(pairs))
    j = (i + rng.integers(1, n, int(pairs))) % n  # never i itself
    i, j = torch.from_numpy(i), torch.from_numpy(j)
    total = sum(float(ms_ssim(x[i[s:s + batch]], x[j[s:s + batch]], data_range=data_range).sum())
                for s in range(0, int(pairs), int(batch)))
    return total / int(pairs)

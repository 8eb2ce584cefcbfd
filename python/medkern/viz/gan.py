"""The image outputs of a synthesis run: sample grids and PNG files (Pillow), and the loss curves of both
players (matplotlib)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .plots import _save, plt


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W) or (N, H, W, 3) uint8."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    arr = (images.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def image_grid(images: torch.Tensor, path, ncol: int = 8, pad: int = 2) -> Path:
    """The images tiled row by row, ``ncol`` per row, on a white background with ``pad`` pixels between."""
    from PIL import Image

    arr = _to_uint8(images)
    n, h, w = arr.shape[:3]
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad) + arr.shape[3:], 255, np.uint8)
    for i, img in enumerate(arr):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path


def write_pngs(images: torch.Tensor, folder, prefix: str = "sample") -> list[Path]:
    """One PNG per image, ``<prefix>_0000.png`` onwards."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(_to_uint8(images)):
        paths.append(folder / f"{prefix}_{i:04d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def gan_curves(history: list[dict], path) -> Path:
    """Both players' losses, the penalty, and the discriminator's mean output on real and generated images."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_out) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("d_loss", "discriminator"), ("g_loss", "generator"), ("penalty", "penalty")):
        if key in history[0]:
            ax_loss.plot(epochs, [h[key] for h in history], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="losses")
    ax_loss.legend()
    for key, label in (("d_real", "real"), ("d_fake", "generated")):
        ax_out.plot(epochs, [h[key] for h in history], label=label)
    ax_out.set(xlabel="epoch", title="mean discriminator output")
    ax_out.legend()
    return _save(fig, path)

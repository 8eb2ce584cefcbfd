"""Where a model looks: Grad-CAM maps for image and volume models (volumes drawn as axial slices) and
per-time-step saliency for sequence models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .plots import _save, plt


def _targets(logits: torch.Tensor, target) -> torch.Tensor:
    """The class each item is explained for: given, or the predicted one."""
    if target is None:
        return logits.argmax(dim=1)
    return torch.as_tensor(target, dtype=torch.int64).expand(logits.shape[0])


def grad_cam(network: torch.nn.Module, layer, x: torch.Tensor, target=None) -> np.ndarray:
    """Selvaraju et al. 2017: the ReLU of the feature maps of ``layer`` weighted by the spatial mean of the
    target logit's gradient, upsampled to the input and scaled to [0, 1] per item; ``(N, H, W)`` for images,
    ``(N, D, H, W)`` for volumes.
    ``layer`` may be a list of modules (an ensemble's members): their maps, each for the network's
    output, are summed before the scaling."""
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    stores = [{} for _ in layers]

    def keeper(store):
        def keep(_, __, out):
            out.register_hook(lambda g: store.__setitem__("grad", g))
            store["act"] = out
        return keep
    handles = [m.register_forward_hook(keeper(store)) for m, store in zip(layers, stores)]
    network.eval()
    try:
        with torch.enable_grad():
            logits = network(x)
            chosen = logits.gather(1, _targets(logits, target)[:, None]).sum()
            network.zero_grad(set_to_none=True)
            chosen.backward()
    finally:
        for handle in handles:
            handle.remove()
    spatial = tuple(range(2, x.dim()))
    cam = 0
    for store in stores:
        weights = store["grad"].mean(dim=spatial, keepdim=True)
        cam = cam + F.relu((weights * store["act"]).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear" if x.dim() == 4 else "trilinear",
                        align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, *[1] * len(spatial))
    return (cam / peak).detach().cpu().numpy()


def time_saliency(network: torch.nn.Module, x: torch.Tensor, target=None) -> np.ndarray:
    """|input x gradient| of the target logit, summed over channels and scaled to [0, 1] per series:
    ``(N, L)``, how much each time step moved the decision."""
    network.eval()
    x = x.detach().clone().requires_grad_(True)
    # cuDNN runs recurrent backward passes only in training mode.
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        logits = network(x)
        logits.gather(1, _targets(logits, target)[:, None]).sum().backward()
    s = (x.grad * x).abs().sum(dim=1)
    return (s / s.amax(dim=1, keepdim=True).clamp(min=1e-12)).detach().cpu().numpy()


def _titles(y, probs, class_names):
    names = lambda k: class_names[k] if k < len(class_names) else str(k)  # noqa: E731
    return [f"true {names(int(t))}, p({names(int(p.argmax()))})={p.max():.2f}" for t, p in zip(y, probs)]


def gradcam_overlays(images, cams, y, probs, class_names, path) -> Path:
    n = len(images)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax, img, cam, title in zip(axes.flat, images, cams, _titles(y, probs, class_names)):
        img = np.asarray(img)
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray" if img.shape[0] == 1 else None)
        ax.imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Grad-CAM: regions that raised the predicted class")
    return _save(fig, path)


SLICE_INCHES = 1.4  # the side of one slice's panel in ``gradcam_slices``


def gradcam_slices(volumes, cams, y, probs, class_names, path, n_slices: int = 8) -> Path:
    """One row per volume ``(C, D, H, W)``: ``n_slices`` axial slices (along D, evenly spaced, the outer ones
    skipped) of its first channel with its Grad-CAM map ``(D, H, W)`` over them. The figure is
    ``n_slices * SLICE_INCHES`` wide and ``len(volumes) * (SLICE_INCHES + 0.4)`` high (the titles)."""
    rows, depth = len(volumes), np.asarray(volumes).shape[2]
    n_slices = min(n_slices, depth)
    picked = np.linspace(0, depth - 1, n_slices + 2)[1:-1].round().astype(int) if depth > n_slices else \
        np.arange(depth)
    fig, axes = plt.subplots(rows, n_slices, figsize=(n_slices * SLICE_INCHES, rows * (SLICE_INCHES + 0.4)),
                             squeeze=False)
    for row, vol, cam, title in zip(axes, volumes, cams, _titles(y, probs, class_names)):
        vol = np.asarray(vol)
        for ax, z in zip(row, picked):
            ax.imshow(vol[0, z], cmap="gray", vmin=0, vmax=1)
            ax.imshow(cam[z], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.set_title(f"z={z}", fontsize=7)
        row[0].set_title(title.replace(", ", ",\n") + f"\nz={picked[0]}", fontsize=7)  # a panel wide
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Grad-CAM on axial slices: regions that raised the predicted class")
    return _save(fig, path)


def saliency_plots(signals, saliency, y, probs, class_names, path) -> Path:
    n = len(signals)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n), squeeze=False)
    for ax, sig, sal, title in zip(axes[:, 0], signals, saliency, _titles(y, probs, class_names)):
        sig = np.asarray(sig)
        t = np.arange(sig.shape[-1])
        for c in range(sig.shape[0]):
            ax.plot(t, sig[c], lw=1, color="k" if c == 0 else None)
        lo, hi = sig.min(), sig.max()
        ax.imshow(sal[None], aspect="auto", cmap="Reds", alpha=0.5, extent=(0, len(t) - 1, lo, hi), vmin=0, vmax=1)
        ax.set_ylim(lo, hi)
        ax.set_title(title, fontsize=8)
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle("saliency: time steps that moved the decision (red)")
    return _save(fig, path)

"""In-memory datasets, the bundle of splits a loader returns, and the seeded stratified split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class ArrayDataset(torch.utils.data.Dataset):
    """Tensors held in memory: images ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)`` in [0, 1], or signals
    ``(N, C, L)``, with int64 class labels ``(N,)`` or float32 forecasting targets ``(N, horizon)``;
    ``transform`` is applied to each x_i.

    ``side_features`` (signals): the last that many samples of channel 0 are not signal but per-item features
    the network takes beside the waveform (a beat's RR intervals, ``medkern.data.mitbih``). Packed into x, they
    travel through loaders, checkpoints, ``predict`` and serving as one tensor."""

    def __init__(self, x, y, transform=None, side_features: int = 0):
        x = torch.as_tensor(x)
        y = torch.as_tensor(y)
        if x.dim() not in (3, 4, 5):
            raise ValueError(f"x must be (N, C, L) signals, (N, C, H, W) images or (N, C, D, H, W) volumes, got "
                             f"shape {tuple(x.shape)}")
        if y.dim() not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must be (N,) labels or (N, horizon) targets with N={x.shape[0]}, "
                             f"got shape {tuple(y.shape)}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.x = x.to(torch.float32)
        # Integer-valued 1-D y are class labels; anything else is a regression target.
        self.y = y.to(torch.int64) if y.dim() == 1 and not y.is_floating_point() else y.to(torch.float32)
        self.transform = transform
        if not 0 <= int(side_features) < (self.x.shape[-1] if self.x.dim() == 3 else 1):
            raise ValueError(f"side_features must be in [0, signal length) for signals (0 otherwise), got "
                             f"{side_features} for x of shape {tuple(self.x.shape)}")
        self.side_features = int(side_features)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i):
        x = self.x[i]
        return (self.transform(x) if self.transform is not None else x), self.y[i]

    def with_transform(self, transform) -> "ArrayDataset":
        """The same tensors (not copied) behind a new per-item transform."""
        return ArrayDataset(self.x, self.y, transform, self.side_features)

    def subset(self, index) -> "ArrayDataset":
        """The items at ``index`` (copied), keeping the transform."""
        index = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        return ArrayDataset(self.x[index], self.y[index], self.transform, self.side_features)

    @property
    def is_classification(self) -> bool:
        return self.y.dim() == 1 and self.y.dtype == torch.int64


@dataclass
class DataSplits:
    train: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset | None
    kind: str                 # "image", "volume" or "sequence"
    num_classes: int          # 0 for forecasting
    class_names: list
    source: str               # path or "synthetic:..."


def stratified_split(ds: ArrayDataset, fraction: float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``ds`` into (rest, held_out) with about ``fraction`` of every class held out, seeded.

    A class with at least two items keeps at least one on each side, so a rare class still reaches both;
    a class with one item stays in ``rest``. Forecasting targets (float y) are split uniformly at random.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(ds)
    if n < 2:
        raise ValueError(f"cannot split a dataset of {n} item(s)")
    rng = np.random.default_rng(seed)
    if ds.is_classification:
        labels = ds.y.numpy()
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    else:
        groups = [np.arange(n)]
    sizes = np.array([len(g) for g in groups])
    # Largest-remainder allocation, so the held-out total is round(fraction * n) before the per-class limits.
    quota = fraction * sizes
    k = np.floor(quota).astype(np.int64)
    extra = int(round(fraction * n)) - int(k.sum())
    k[np.argsort(-(quota - k), kind="stable")[:max(extra, 0)]] += 1
    k = np.where(sizes >= 2, np.clip(k, 1, sizes - 1), 0)
    held = [rng.permutation(members)[:kc] for members, kc in zip(groups, k)]
    held = np.sort(np.concatenate(held))
    rest = np.setdiff1d(np.arange(n), held)
    return ds.subset(rest), ds.subset(held)

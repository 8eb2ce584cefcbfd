"""Quality of generated images: Frechet and kernel distances and precision/recall between feature sets
(embeddings (N, D) of real and generated images), and a pixel-space memorisation check.

All maths in float64; inputs are numpy arrays or torch tensors."""
from __future__ import annotations

import numpy as np
import torch

from ._inputs import to_numpy

_BLOCK_ELEMENTS = 1 << 23  # distance-matrix block of ~64 MB in float64, whatever the set sizes


def checked(a, name: str, ndim: int | None = 2, min_rows: int = 2) -> np.ndarray:
    """``a`` as a finite float64 array with ``ndim`` dimensions (any >= 1 when None) and at least
    ``min_rows`` rows, or a ValueError/TypeError naming ``name``."""
    x = to_numpy(a, name)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if (ndim is not None and x.ndim != ndim) or x.ndim == 0:
        want = f"{ndim}-D (N, D)" if ndim == 2 else f"{ndim}-D" if ndim else "at least 1-D (N, ...)"
        raise ValueError(f"{name} must be {want}, got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {x.shape[0]}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def _feature_pair(real_features, fake_features, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real = checked(real_features, "real_features", min_rows=min_rows)
    fake = checked(fake_features, "fake_features", min_rows=min_rows)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features and fake_features must have the same feature dimension, got "
                         f"{real.shape[1]} and {fake.shape[1]}")
    return real, fake


def _psd_eig_sqrt(w: np.ndarray) -> np.ndarray:
    """Square roots of the eigenvalues of a PSD matrix; those within round-off of 0 (relative to the largest)
    are 0, since a square root would blow their ~1e-16 error up to ~1e-8 (singular covariances, N <= D)."""
    tol = np.abs(w).max(initial=0.0) * w.size * np.finfo(np.float64).eps
    return np.sqrt(np.where(w > tol, w, 0.0))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * _psd_eig_sqrt(w)) @ v.T


def frechet_distance(real_features, fake_features) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID when the features are Inception
    embeddings): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, sample covariances (ddof 1).

    ``tr (S1 S2)^(1/2)`` is the sum of the square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^(1/2) S2 S1^(1/2)`` (same spectrum as S1 S2), which stays real and stable where a general
    matrix square root of S1 S2 picks up imaginary round-off, also for singular covariances (N <= D)."""
    real, fake = _feature_pair(real_features, fake_features)
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1 = np.atleast_2d(np.cov(real, rowvar=False))
    s2 = np.atleast_2d(np.cov(fake, rowvar=False))
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    tr_sqrt = _psd_eig_sqrt(np.linalg.eigvalsh((m + m.T) / 2)).sum()
    fd = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)  # a distance: only round-off makes it negative (identical sets)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    m = x.shape[0]
    kxx = (gamma * (x @ x.T) + coef0) ** degree
    kyy = (gamma * (y @ y.T) + coef0) ** degree
    kxy = (gamma * (x @ y.T) + coef0) ** degree
    off = m * (m - 1)
    return float((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2.0 * kxy.mean())


def kernel_distance(real_features, fake_features, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                    gamma: float | None = None, coef0: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Kernel distance (KID, Binkowski et al. 2018): the unbiased estimator of the squared MMD with the
    polynomial kernel ``(gamma x.y + coef0)^degree`` (gamma default 1/D), on ``subsets`` random subsets of
    ``subset_size`` samples from each set (clipped to the smaller set; drawn without replacement within a
    subset). Returns (mean, std) over the subsets (population std, as the reference code does).

    Unlike FD it is unbiased, so values from different sample sizes compare and can be slightly negative
    when the two distributions are the same."""
    real, fake = _feature_pair(real_features, fake_features)
    if int(subsets) < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if int(subset_size) < 2:
        raise ValueError(f"subset_size must be >= 2 (the estimator leaves the diagonal out), got {subset_size}")
    if int(degree) != degree or int(degree) < 1:
        raise ValueError(f"degree must be a positive integer, got {degree}")
    gamma = 1.0 / real.shape[1] if gamma is None else float(gamma)
    if not gamma > 0.0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    m = min(int(subset_size), real.shape[0], fake.shape[0])
    rng = np.random.default_rng(seed)
    values = np.array([_mmd2_unbiased(real[rng.choice(real.shape[0], m, replace=False)],
                                      fake[rng.choice(fake.shape[0], m, replace=False)],
                                      int(degree), gamma, float(coef0)) for _ in range(int(subsets))])
    return float(values.mean()), float(values.std())


def block_distances(queries: np.ndarray, refs: np.ndarray, batch: int | None = None):
    """Yields (start, Euclidean distances (b, len(refs)) of queries[start:start + b] to every ref), float64,
    in blocks of ``batch`` rows (default: ~64 MB per block) so memory stays bounded."""
    q, r = torch.from_numpy(queries), torch.from_numpy(refs)
    batch = batch or max(1, _BLOCK_ELEMENTS // max(1, r.shape[0]))
    for start in range(0, q.shape[0], batch):
        yield start, torch.cdist(q[start:start + batch], r)


def _knn_radii(x: np.ndarray, k: int) -> torch.Tensor:
    """Distance of each sample to its k-th nearest other sample (the sample itself is the 0th)."""
    return torch.cat([d.kthvalue(k + 1, dim=1).values for _, d in block_distances(x, x)])


def _coverage(queries: np.ndarray, refs: np.ndarray, radii: torch.Tensor) -> float:
    """Fraction of queries inside at least one ref's ball."""
    inside = sum(int((d <= radii[None, :]).any(dim=1).sum()) for _, d in block_distances(queries, refs))
    return inside / queries.shape[0]


def precision_recall(real_features, fake_features, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
    around its samples with radius the distance to the k-th nearest neighbour. Precision = fraction of fake
    samples inside the real manifold (fidelity), recall = fraction of real samples inside the fake manifold
    (coverage). Needs more than ``k`` samples in each set."""
    real, fake = _feature_pair(real_features, fake_features, min_rows=1)
    if int(k) != k or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    k = int(k)
    for name, x in (("real_features", real), ("fake_features", fake)):
        if x.shape[0] <= k:
            raise ValueError(f"{name} needs more than k={k} samples for k-nearest-neighbour radii, got {x.shape[0]}")
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


def _nearest(queries: np.ndarray, refs: np.ndarray, batch: int) -> np.ndarray:
    return torch.cat([d.min(dim=1).values for _, d in block_distances(queries, refs, batch)]).numpy()


def memorization(generated, train, test, *, batch: int = 512, min_ratio: float = 0.9,
                 max_copied: float = 0.05) -> dict:
    """Pixel-space check that a generator does not copy its training images. For each generated image, the
    Euclidean distance (images flattened) to its nearest training image; for each real test image, the
    same: the distance an unseen real image shows, the baseline. A copying generator puts its samples far
    closer to the training images than unseen real images are.

    Returns ``ratio`` = median(generated->train) / median(test->train) (about 1 for a generator as far from
    the training set as fresh real data; NaN if both medians are 0), ``copied_fraction`` = fraction of
    generated images closer to a training image than the 1st percentile of the test->train distances, both
    medians, and ``passed`` = ratio >= ``min_ratio`` and copied_fraction <= ``max_copied``. The defaults
    allow 10% of closeness for the generator's smoothing and 5x the 1% of real test images that are that
    close by chance. A test set that shares images with the training set makes the baseline 0 and the
    check meaningless."""
    gen = checked(generated, "generated", ndim=None, min_rows=1)
    tr = checked(train, "train", ndim=None, min_rows=1)
    te = checked(test, "test", ndim=None, min_rows=1)
    gen, tr, te = (a.reshape(a.shape[0], -1) for a in (gen, tr, te))
    for name, a in (("generated", gen), ("test", te)):
        if a.shape[1] != tr.shape[1]:
            raise ValueError(f"{name} and train images must have the same number of values per image, got "
                             f"{a.shape[1]} and {tr.shape[1]}")
    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    gen_d, test_d = _nearest(gen, tr, int(batch)), _nearest(te, tr, int(batch))
    gen_med, test_med = float(np.median(gen_d)), float(np.median(test_d))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(gen_med) / np.float64(test_med))
    copied = float(np.mean(gen_d < np.percentile(test_d, 1)))
    return {"ratio": ratio, "copied_fraction": copied,
            "passed": bool(ratio >= float(min_ratio) and copied <= float(max_copied)),
            "gen_to_train_median": gen_med, "test_to_train_median": test_med}

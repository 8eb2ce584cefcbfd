"""Splits and folds by group (a patient, a record): every item of a group lands on the same side, so a model
is never validated or tested on a patient it was trained on. Groups are spread so that each side's class
mix is as close to the whole's as whole groups allow (scikit-learn's ``StratifiedGroupKFold``)."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def group_folds(labels, groups, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` folds (the sorted item indices each holds out) over the distinct ``groups``, seeded; ``k`` is
    capped at the number of groups."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    n_groups = np.unique(groups).size
    if n_groups < 2 or int(k) < 2:
        raise ValueError(f"grouped folds need at least 2 groups and k >= 2, got {n_groups} group(s) and k={k}")
    folds = StratifiedGroupKFold(n_splits=min(int(k), n_groups), shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class rarer than k items is expected (AAMI's Q beats); it is dealt anyway
        warnings.simplefilter("ignore", UserWarning)
        return [np.sort(held) for _, held in folds.split(np.zeros(labels.size), labels, groups)]


def group_split(labels, groups, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) item indices with about ``fraction`` of the groups held out: the first of
    ``round(1 / fraction)`` grouped folds."""
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    held = group_folds(labels, groups, max(2, round(1.0 / float(fraction))), seed)[0]
    return np.setdiff1d(np.arange(np.asarray(labels).size), held), held


def cap_per_group(labels, groups, cap: int, seed: int = 0) -> np.ndarray:
    """The sorted indices of the items kept when each group keeps at most ``cap`` items of each class (a
    seeded random choice): the majority class is undersampled within every patient, so that training sees
    every patient's rare beats and a fair share of each patient's common ones, in less time."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    kept = []
    for g in np.unique(groups):
        for c in np.unique(labels[groups == g]):
            members = np.flatnonzero((groups == g) & (labels == c))
            kept.append(members if members.size <= cap else rng.choice(members, int(cap), replace=False))
    return np.sort(np.concatenate(kept))

"""Where a training run's choices are judged: on the validation split when it is large enough to trust, else by
stratified k-fold cross-validation over the training data with the small validation split pooled in. On a few
dozen items an AUROC moves by several points between seeds and a decision threshold by far more, so choices
made there are mostly noise; out-of-fold predictions give every training item a held-out score instead.

The folds take items as independent. Data with several items per patient (beats of a record) must come with a
validation split by patient of at least ``MIN_VAL`` items, as the MIT-BIH folder reader's is: it is used as it
is, never refolded."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..data import ArrayDataset

MIN_VAL = 100  # validation splits smaller than this are not trusted on their own
FOLDS = 4      # fewer folds than the usual 5: each member costs (k - 1) trainings on the pooled data


@dataclass
class Validation:
    """The held-out items (``y``, in a fixed order) and how they are held out: ``mode`` ``"holdout"`` (the
    validation split, ``parts`` one (train, val) pair) or ``"cv"`` (``folds`` stratified folds of ``pool``,
    each held out in turn by a network trained on the others)."""

    mode: str
    pool: ArrayDataset
    folds: int
    reason: str
    train: ArrayDataset | None = None

    @property
    def y(self) -> np.ndarray:
        return self.pool.y.numpy()

    def parts(self, seed: int) -> list[tuple[ArrayDataset, ArrayDataset, np.ndarray]]:
        """(fit, held out, indices of the held-out items in ``y``) for each network of one ensemble member;
        ``seed`` draws the fold assignment, so members differ in their folds as well as their weights."""
        if self.mode == "holdout":
            return [(self.train, self.pool, np.arange(len(self.pool)))]
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(self.folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # a class with fewer items than folds is left out of some folds
            warnings.simplefilter("ignore", UserWarning)
            pairs = list(splitter.split(np.zeros(len(self.pool)), self.y))
        return [(self.pool.subset(fit), self.pool.subset(held), held) for fit, held in pairs]

    def describe(self) -> dict:
        return {"mode": self.mode, "folds": self.folds, "items": len(self.pool), "why": self.reason}


def plan(train: ArrayDataset, val: ArrayDataset | None, *, min_val: int = MIN_VAL, folds: int = FOLDS,
         mode: str | None = None) -> Validation:
    """The validation split when it has at least ``min_val`` items, else ``folds``-fold cross-validation over
    train + val. ``mode`` (``"holdout"``, ``"cv"``) forces one, as a recorded recipe replays."""
    n_val = 0 if val is None else len(val)
    if mode is None:
        mode = "holdout" if n_val >= min_val else "cv"
    if mode == "holdout":
        if val is None:
            raise ValueError("holdout validation needs a validation split")
        return Validation("holdout", val, 1, f"validation split of {n_val} items (>= {min_val})", train)
    if mode != "cv":
        raise ValueError(f"mode must be 'holdout', 'cv' or None, got {mode!r}")
    pool = train if val is None else ArrayDataset(torch.cat([train.x, val.x]), torch.cat([train.y, val.y]),
                                                  train.transform, train.side_features)
    # A class rarer than k is held out in fewer folds (each of its items still once); fewer folds for everything
    # would cost every other class training data. Only when even the commonest class is rarer are there fewer.
    k = max(2, min(folds, int(np.bincount(pool.y.numpy()).max())))
    why = (f"validation split of {n_val} items (< {min_val})" if val is not None else "no validation split")
    return Validation("cv", pool, k, f"{why}: {k}-fold cross-validation over {len(pool)} training items")

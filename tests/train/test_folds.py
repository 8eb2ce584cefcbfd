"""The held-out plan: the validation split when it is large enough, else stratified folds over train + val."""
import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset
from medkern.train import folds


def _data(counts, seed=0):
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.random.default_rng(seed).normal(size=(len(y), 1, 8)).astype(np.float32)
    return ArrayDataset(torch.from_numpy(x), torch.from_numpy(y))


@pytest.mark.parametrize("n_val, mode", [(120, "holdout"), (99, "cv"), (None, "cv")])
def test_small_or_missing_validation_splits_become_cross_validation(n_val, mode):
    train, val = _data([40, 20]), (None if n_val is None else _data([n_val - n_val // 3, n_val // 3], seed=1))
    plan = folds.plan(train, val)
    assert plan.mode == mode
    assert len(plan.y) == (n_val if mode == "holdout" else 60 + (n_val or 0))
    assert plan.describe()["mode"] == mode
    assert (f"{n_val} items" if n_val else "no validation split") in plan.reason


@pytest.mark.parametrize("counts, k", [([30, 12], folds.FOLDS), ([30, 3], folds.FOLDS), ([30, 1, 10], folds.FOLDS),
                                       ([3, 2], 3)])
def test_folds_partition_the_pool_stratified_and_seeded(counts, k):
    plan = folds.plan(_data(counts), None)
    assert plan.folds == k
    parts = plan.parts(seed=0)
    held = np.concatenate([index for _, _, index in parts])
    assert sorted(held) == list(range(sum(counts)))  # every item held out exactly once
    for fit, held_ds, index in parts:
        assert len(fit) + len(held_ds) == sum(counts)
        assert np.array_equal(held_ds.y.numpy(), plan.y[index])
        for c, n in enumerate(counts):  # each class spread over the folds as evenly as it can be
            assert abs(int((held_ds.y == c).sum()) - n / k) < 1
    again, other = plan.parts(seed=0), plan.parts(seed=1)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(parts, again))
    assert not all(np.array_equal(a[2], b[2]) for a, b in zip(parts, other))


def test_forced_modes_are_checked():
    with pytest.raises(ValueError, match="needs a validation split"):
        folds.plan(_data([5, 5]), None, mode="holdout")
    with pytest.raises(ValueError, match="mode must be"):
        folds.plan(_data([5, 5]), None, mode="bootstrap")
    assert folds.plan(_data([5, 5]), _data([3, 3]), mode="holdout").mode == "holdout"


@pytest.mark.parametrize("data, test, mode", [("medmnist/breastmnist.npz", None, "cv"),
                                              ("ucr/ECG200_TRAIN.txt", "ucr/ECG200_TEST.txt", "cv")])
def test_real_small_validation_splits_are_cross_validated(data, test, mode):
    from medkern.data import load, shared_data_dir

    root = shared_data_dir()
    if root is None or not (root / data).exists():
        pytest.skip(f"real data {data} not found (set MEDKERN_DATA or provide ../shared/data)")
    splits = load(root / data, test=None if test is None else root / test, task="classify" if test is None
                  else "sequence")
    plan = folds.plan(splits.train, splits.val)
    assert len(splits.val) < folds.MIN_VAL and plan.mode == mode
    assert len(plan.y) == len(splits.train) + len(splits.val) and plan.folds == folds.FOLDS

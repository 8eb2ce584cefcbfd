"""ArrayDataset and the stratified split."""
import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset, stratified_split


def labelled(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(120), np.ones(70), np.full(9, 2), [3]].astype(np.int64)[:n]
    return ArrayDataset(rng.random((len(y), 1, 8)).astype(np.float32), y)


def test_dataset_items_dtypes_and_transform():
    ds = ArrayDataset(np.arange(24, dtype=np.float64).reshape(2, 3, 4), np.array([1, 0]))
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64 and len(ds) == 2
    x, y = ds[1]
    assert torch.equal(x, torch.arange(12, 24, dtype=torch.float32).reshape(3, 4)) and int(y) == 0
    doubled = ds.with_transform(lambda t: 2 * t)
    assert doubled.x is ds.x and torch.equal(doubled[0][0], 2 * ds.x[0]) and ds.transform is None
    reg = ArrayDataset(torch.zeros(5, 2, 6), torch.zeros(5, 3))
    assert reg.y.dtype == torch.float32 and not reg.is_classification


@pytest.mark.parametrize("x, y", [(np.zeros((4, 5)), np.zeros(4)), (np.zeros((4, 1, 5)), np.zeros(3)),
                                  (np.zeros((4, 1, 5)), np.zeros((4, 1, 1)))])
def test_dataset_rejects_bad_shapes(x, y):
    with pytest.raises(ValueError):
        ArrayDataset(x, y)


def test_stratified_split_proportions_and_partition():
    ds = labelled()
    rest, held = stratified_split(ds, 0.2, seed=1)
    counts = lambda d: np.bincount(d.y.numpy(), minlength=4).tolist()  # noqa: E731
    assert counts(held) == [24, 14, 2, 0] and counts(rest) == [96, 56, 7, 1]  # the singleton stays in rest
    rows = {tuple(r) for r in torch.cat([rest.x, held.x]).flatten(1).tolist()}
    assert len(rows) == len(ds)  # disjoint and complete
    again, _ = stratified_split(ds, 0.2, seed=1)
    other, _ = stratified_split(ds, 0.2, seed=2)
    assert torch.equal(again.x, rest.x) and not torch.equal(other.x, rest.x)


def test_rare_class_reaches_both_sides():
    ds = ArrayDataset(np.zeros((12, 1, 3)), np.array([0] * 10 + [1] * 2))
    rest, held = stratified_split(ds, 0.1, seed=0)
    assert held.y.tolist().count(1) == 1 and rest.y.tolist().count(1) == 1


def test_regression_targets_split_at_random():
    ds = ArrayDataset(torch.arange(40.0).reshape(10, 1, 4), torch.arange(20.0).reshape(10, 2))
    rest, held = stratified_split(ds, 0.3, seed=0)
    assert len(held) == 3 and len(rest) == 7


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 2])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labelled(), fraction, 0)

"""Synthetic generators: deterministic, in range, and learnable but not trivially."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import roc_auc_score

from medkern.data import synthetic_ecg, synthetic_lesions, synthetic_vitals

GENERATORS = [
    (synthetic_lesions, dict(size=20)),
    (synthetic_ecg, dict(length=120)),
    (synthetic_vitals, dict(context=30, horizon=4)),
]


@pytest.mark.parametrize("gen, kw", GENERATORS, ids=lambda g: getattr(g, "__name__", ""))
def test_deterministic_for_a_seed(gen, kw):
    a, b, c = gen(40, seed=3, **kw), gen(40, seed=3, **kw), gen(40, seed=4, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_lesions_shape_range_fraction():
    ds = synthetic_lesions(50, size=24, seed=1, malignant_fraction=0.3)
    assert ds.x.shape == (50, 3, 24, 24) and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert ds.x.min() >= 0 and ds.x.max() <= 1 and ds.x.std() > 0.05
    assert int(ds.y.sum()) == 15


def test_ecg_shape_range_fraction():
    ds = synthetic_ecg(60, seed=1, abnormal_fraction=0.5)
    assert ds.x.shape == (60, 1, 187) and int(ds.y.sum()) == 30
    assert -3.0 < ds.x.min() and ds.x.max() < 4.0
    # the labelled beat's R peak (as tall as the window's tallest, about 1 mV) near 0.4 s = sample 50
    near = ds.x[:, 0, 44:57].amax(dim=1)
    assert (near >= 0.75 * ds.x[:, 0].amax(dim=1)).float().mean() > 0.9 and near.median() > 0.5


def test_vitals_shape_range_and_continuity():
    ds = synthetic_vitals(30, context=40, horizon=5, seed=2)
    assert ds.x.shape == (30, 3, 40) and ds.y.shape == (30, 5) and ds.y.dtype == torch.float32
    assert 0.3 < ds.x.min() and ds.x.max() < 2.0
    assert (ds.x[:, 2] <= 1.0).all()  # SpO2 never above 100%
    # the target continues heart rate: its first value is close to the context's last
    assert (ds.y[:, 0] - ds.x[:, 0, -1]).abs().median() < 0.03


@pytest.mark.parametrize("gen, kw", [(synthetic_lesions, dict(size=16)), (synthetic_ecg, dict(length=100))],
                         ids=["lesions", "ecg"])
def test_learnable_but_not_linearly_trivial(gen, kw):
    train, test = gen(500, seed=0, **kw), gen(300, seed=1, **kw)
    clf = LogisticRegression(max_iter=300).fit(train.x.flatten(1).numpy(), train.y.numpy())
    prob = clf.predict_proba(test.x.flatten(1).numpy())[:, 1]
    acc = np.mean((prob >= 0.5) == test.y.numpy())
    assert 0.6 < roc_auc_score(test.y.numpy(), prob) < 0.97 and acc < 0.95


def linear_auroc(train, test):
    clf = LogisticRegression(max_iter=300).fit(train.x.flatten(1).numpy(), train.y.numpy())
    return roc_auc_score(test.y.numpy(), clf.predict_proba(test.x.flatten(1).numpy())[:, 1])


def test_small_cnn_learns_lesions_beyond_a_linear_model():
    torch.manual_seed(0)
    train, test = synthetic_lesions(500, size=16, seed=0), synthetic_lesions(300, size=16, seed=1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small gain nothing from threads, and lose a lot on a busy machine
    try:
        for _ in range(8):
            for i in torch.randperm(len(train)).split(50):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(train.x[i]), train.y[i]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    with torch.no_grad():
        prob = net(test.x).softmax(1)[:, 1].numpy()
    auc = roc_auc_score(test.y.numpy(), prob)
    assert auc > 0.8 and auc > linear_auroc(train, test) + 0.05


def test_vitals_forecastable_beyond_persistence():
    train, test = synthetic_vitals(600, seed=0), synthetic_vitals(300, seed=1)
    model = Ridge(1e-3).fit(train.x.flatten(1).numpy(), train.y.numpy())
    mae = np.abs(model.predict(test.x.flatten(1).numpy()) - test.y.numpy()).mean()
    persistence = (test.x[:, :1, -1] - test.y).abs().mean().item()
    assert 0 < mae < 0.9 * persistence


@pytest.mark.parametrize("call, match", [
    (lambda: synthetic_lesions(0), "n must be positive"),
    (lambda: synthetic_lesions(5, malignant_fraction=1.5), "malignant_fraction"),
    (lambda: synthetic_lesions(5, size=4), "size"),
    (lambda: synthetic_ecg(5, length=8), "length"),
    (lambda: synthetic_vitals(5, horizon=0), "horizon"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()

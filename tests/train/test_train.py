"""medkern.train: losses, schedule, sampler, early stopping, reproducibility, atomic checkpoints, resume,
and DataLoader workers after OpenMP has run."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medkern import train as training
from medkern.data import ArrayDataset, synthetic_ecg
from medkern.models import SequenceClassifier
from medkern.train import TrainConfig, loop

QUIET = {"progress": False, "log": lambda s: None}


def test_focal_loss_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0, 0, 2, 1])
    w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    assert torch.allclose(training.focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y))
    p = torch.softmax(logits, 1)[torch.arange(9), y]
    expected = (-(1 - p) ** 2.5 * p.log() * w[y]).mean()
    assert torch.allclose(training.focal_loss(logits, y, gamma=2.5, weight=w), expected)


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight
    y = torch.tensor([0] * 7 + [1] * 2 + [3] * 3)
    w = training.balanced_class_weights(y, 4)
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=y.numpy())
    np.testing.assert_allclose(w.numpy()[[0, 1, 3]], expected, rtol=1e-6)
    assert w[2] == 0  # absent class


def test_warmup_then_cosine():
    f = loop.lr_lambda(TrainConfig(epochs=4, warmup_epochs=1), steps_per_epoch=10)
    assert [f(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f(10) == pytest.approx(1.0) and f(25) == pytest.approx(0.5) and f(39) < 0.01
    assert loop.lr_lambda(TrainConfig(epochs=4, warmup_epochs=0, schedule="constant"), 10)(30) == 1.0


def test_weighted_sampler_balances_classes():
    y = torch.tensor([0] * 180 + [1] * 20)
    ds = ArrayDataset(torch.zeros(200, 1, 4), y)
    seen = torch.cat([b for _, b in loop.make_loader(ds, 50, shuffle=True, weighted=True, seed=1)])
    assert len(seen) == 200 and 0.35 < seen.float().mean() < 0.65


def test_config_rejects_bad_values_by_name():
    for bad, name in (({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"loss": "mse"}, "loss"),
                      ({"sampler": "balanced"}, "sampler"), ({"threshold": "sensitivity"}, "target_sensitivity"),
                      ({"class_weight": "auto"}, "class_weight"), ({"num_workers": -1}, "num_workers")):
        with pytest.raises(ValueError, match=name):
            TrainConfig(**bad)


def _tiny(**arch):
    return SequenceClassifier(hidden=6, conv_channels=4, **arch)


DATA = synthetic_ecg(48, length=32, seed=0)


def test_seeded_runs_are_reproducible_and_options_take_effect():
    opts = dict(epochs=2, batch_size=12, class_weight="balanced", loss="focal", **QUIET)
    a = _tiny().fit(DATA, DATA, **opts)
    b = _tiny().fit(DATA, DATA, **opts)
    for k, v in a.network.state_dict().items():
        assert torch.equal(v, b.network.state_dict()[k]), k
    assert [h["train_loss"] for h in a.result.history] == [h["train_loss"] for h in b.result.history]
    c = _tiny().fit(DATA, DATA, **{**opts, "loss": "ce"})
    assert c.result.history[0]["train_loss"] != a.result.history[0]["train_loss"]


def test_early_stopping_keeps_the_best_epoch(monkeypatch):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.69, 0.9])
    snapshots = []
    real = loop.validate

    def scripted(network, ds, objective, **kw):
        snapshots.append({k: v.clone() for k, v in network.state_dict().items()})
        return {**real(network, ds, objective, **kw), "auroc": next(scores)}
    monkeypatch.setattr(loop, "validate", scripted)
    model = _tiny().fit(DATA, DATA, epochs=6, batch_size=12, patience=3, monitor="auroc", **QUIET)
    assert len(model.result.history) == 5 and model.result.stopped_early
    assert model.result.best_epoch == 2 and model.result.best_score == 0.7
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    training.save_atomic({"w": torch.arange(3)}, path)

    def dies_mid_write(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        training.save_atomic({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(training.load_checkpoint(path)["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="ck.pt"):
        training.load_checkpoint(path)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, monkeypatch, ema):
    # dropout and augmentation draw random numbers, which the checkpoint must carry over
    opts = dict(epochs=3, batch_size=12, patience=None, ema=ema, **QUIET)
    whole = _tiny(dropout=0.3).fit(DATA, DATA, out=tmp_path / "whole", **opts)
    real, calls = loop.train_one_epoch, []

    def killed_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(loop, "train_one_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _tiny(dropout=0.3).fit(DATA, DATA, out=tmp_path / "killed", **opts)
    monkeypatch.undo()
    assert training.load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 2
    resumed = _tiny(dropout=0.3).fit(DATA, DATA, out=tmp_path / "killed", resume=True, **opts)
    assert [h["train_loss"] for h in resumed.result.history] == [h["train_loss"] for h in whole.result.history]
    for k, v in whole.network.state_dict().items():
        assert torch.equal(v, resumed.network.state_dict()[k]), k


def test_loader_workers_do_not_hang_after_openmp(tmp_path):
    """fork after an OpenMP region would hang the workers; a timeout turns a hang into a failure."""
    script = textwrap.dedent("""
        import torch, medkern
        from medkern.data import synthetic_ecg
        from medkern.models import SequenceClassifier
        medkern.ops.conv2d(torch.rand(2, 3, 32, 32), torch.rand(8, 3, 3, 3))  # OpenMP runs in the parent
        data = synthetic_ecg(24, length=32)
        m = SequenceClassifier(hidden=4, conv_channels=0).fit(data, data, epochs=1, batch_size=8, num_workers=1,
                                                              progress=False)
        print("done", len(m.result.history))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "done 1" in proc.stdout


def test_ema_keeps_the_moving_average_of_the_weights(monkeypatch):
    seen = []
    real = loop.train_one_epoch

    def record(model, *args, average=None, **kwargs):
        loss = real(model, *args, average=average, **kwargs)
        seen.append(tuple({k: v.clone() for k, v in m.state_dict().items()} for m in (average.module, model)))
        return loss
    monkeypatch.setattr(loop, "train_one_epoch", record)
    model = _tiny().fit(DATA, DATA, epochs=2, batch_size=12, ema=0.5, patience=None, monitor="loss", **QUIET)
    kept = model.network.state_dict()
    best = model.result.best_epoch - 1
    assert any(not torch.equal(seen[best][0][k], seen[best][1][k]) for k in kept)  # the average is not the live model
    assert all(torch.equal(kept[k], seen[best][0][k]) for k in kept)


def test_lr_follows_the_schedule_during_fit():
    model = _tiny().fit(DATA, None, epochs=3, batch_size=12, warmup_epochs=1, **QUIET)
    lrs = [h["lr"] for h in model.result.history]
    # After epoch e of 3 with one warm-up epoch: cosine at (e - 1) / 2 of the way.
    assert lrs == pytest.approx([3e-3 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 2)) for e in (1, 2, 3)], abs=1e-9)


def test_cumulative_loss_is_the_mean_binary_cross_entropy_of_the_grade_events():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 2, 2, 0])
    at_least = torch.softmax(logits, 1).flip(1).cumsum(1).flip(1)[:, 1:]  # P(grade >= k), k = 1..3
    events = (y[:, None] >= torch.arange(1, 4)).double()
    expected = F.binary_cross_entropy(at_least, events, reduction="none").mean(1)
    assert torch.allclose(training.cumulative_loss(logits, y), expected.mean())
    w = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    assert torch.allclose(training.cumulative_loss(logits, y, w), (expected * w[y]).mean())
    # Rank-aware: all mass one grade off costs less than all mass three grades off.
    near, far = torch.tensor([[0.0, 9.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 0.0, 9.0]])
    assert training.cumulative_loss(near, torch.tensor([0])) < training.cumulative_loss(far, torch.tensor([0]))

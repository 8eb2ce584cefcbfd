"""The time-budget recipe search: choices on held-out data only, recorded with their numbers, within the
budget, and replayed from the record to the same weights."""
import json

import numpy as np
import pytest
import torch

from medkern.data import ArrayDataset
from medkern.models import ImageClassifier, SequenceClassifier, load
from medkern.train import folds, recipe as recipes

TINY_SIGNALS = {"hidden": 4, "conv_channels": 4, "conv_layers": 1}
QUIET = {"progress": False, "batch_size": 16}


def _signals(n, seed, length=24):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 1, length)) + 1.5 * y[:, None, None] * np.sin(np.linspace(0, 3, length))
    return ArrayDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def _images(n, seed, size=8):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.random((n, 1, size, size)) * 0.5
    x[y == 1, :, 2:6, 2:4] += 0.5  # a bright patch on the left: not mirror-symmetric
    return ArrayDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))


def _search(make, train, val, budget=8.0, epochs=2, **kw):
    return recipes.search(make, train, val, budget=budget, options={**QUIET, "epochs": epochs},
                          class_names=["a", "b"], log=None, **kw)


def _state(model):
    return {k: v.clone() for k, v in model.network.state_dict().items()}


@pytest.mark.parametrize("kind", ["signals-cv", "images-holdout"])
def test_search_records_every_choice_and_replays_to_the_same_weights(kind):
    if kind == "signals-cv":  # 12 validation items: cross-validation over the 60 pooled items
        make = lambda **kw: SequenceClassifier(**{**TINY_SIGNALS, **kw})  # noqa: E731
        train, val = _signals(48, 0), _signals(12, 1)
    else:  # a validation split of 100 is trusted as it is
        make = lambda **kw: ImageClassifier(**{"width": 4, "depth": 1, **kw})  # noqa: E731
        train, val = _images(40, 0), _images(100, 1)
    model, record = _search(make, train, val)
    mode = record["validation"]["mode"]
    assert mode == ("cv" if kind == "signals-cv" else "holdout")
    per_member = record["validation"]["folds"] if mode == "cv" else 1
    assert record["networks"] == per_member * len(record["units"]) == len(model.member_results)
    assert model.ensemble == record["networks"] and 1 <= record["epochs"] <= 2
    rows = record["width"]["candidates"]
    assert [r["scale"] for r in rows] == list(recipes.SCALES)
    assert all(0.0 <= r["auroc"] <= 1.0 and r["nll"] > 0 for r in rows if "skipped" not in r)
    stops = ("budget", "no held-out improvement", f"at most {recipes.MAX_MEMBERS} members")
    assert record["members"]["stopped"] in stops
    assert all(m["decision"] != "dropped" for m in record["members"]["added"][:-1])
    assert record["heldout"]["n"] == (60 if mode == "cv" else 100) and model.temperature > 0
    assert (record["tta"] is not None) == (kind == "images-holdout")
    if record["tta"]:
        assert model.arch["flip_average"] is record["tta"]["chosen"]
    again, replayed = recipes.replay(make, train, val, json.loads(json.dumps(record)), options=QUIET,
                                     class_names=["a", "b"], log=None)
    assert replayed["units"] == record["units"] and again.arch == model.arch
    assert again.temperature == model.temperature and again.threshold == model.threshold
    first, second = _state(model), _state(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert replayed["heldout"]["auroc"] == record["heldout"]["auroc"]


def test_a_fixed_width_is_not_searched_and_an_exhausted_budget_stops_after_one_member():
    make = lambda **kw: SequenceClassifier(**{**TINY_SIGNALS, **kw})  # noqa: E731
    model, record = _search(make, _signals(40, 0), None, budget=1e-3, arch={"hidden": 4})
    assert [r["scale"] for r in record["width"]["candidates"]] == [1.0]
    assert record["members"]["added"] == [] and record["members"]["stopped"] == "budget"
    assert len(record["units"]) == 1 and record["epochs"] == 1


def test_a_class_rarer_than_the_folds_keeps_its_output():
    ds = _signals(40, 0)
    y = ds.y.clone()
    y[:2] = 2  # two items of a third class: some folds train without it
    make = lambda **kw: SequenceClassifier(**{**TINY_SIGNALS, **kw})  # noqa: E731
    model, record = recipes.search(make, ArrayDataset(ds.x, y), None, budget=1.0, options={**QUIET, "epochs": 1},
                                   class_names=["a", "b", "c"], log=None)
    assert record["validation"]["folds"] == folds.FOLDS and record["heldout"]["n"] == 40
    assert model.predict(ds.x[:3]).shape == (3, 3)


def test_saved_ensemble_with_flips_predicts_as_before(tmp_path):
    make = lambda **kw: ImageClassifier(**{"width": 4, "depth": 1, **kw})  # noqa: E731
    model, _ = _search(make, _images(40, 0), _images(100, 1))
    model.arch = {**model.arch, "flip_average": True}  # whatever was chosen, the flips must survive a reload
    for net in ([model.network] if model.ensemble == 1 else model.network.members):
        net.flip_average = True
    x = _images(6, 2).x
    loaded = load(model.save(tmp_path / "m.pt"))
    assert loaded.ensemble == model.ensemble and loaded.arch["flip_average"] is True
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=1e-6)
    # averaged over left-right mirror images only: the augmentation never flips up and down
    np.testing.assert_allclose(loaded.predict(x.flip(-1)), loaded.predict(x), atol=1e-6)
    assert not np.allclose(loaded.predict(x.flip(-2)), loaded.predict(x), atol=1e-6)


def _ucr(path, n, seed):
    ds = _signals(n, seed)
    np.savetxt(path, np.column_stack([ds.y.numpy() * 2 - 1, ds.x[:, 0].numpy()]))
    return path


def test_cli_budget_run_records_the_recipe_and_replays_it(tmp_path, capsys):
    from medkern import cli

    data = ["--data", _ucr(tmp_path / "T_TRAIN.txt", 40, 0), "--test", _ucr(tmp_path / "T_TEST.txt", 20, 1)]
    common = ["train", "sequence", *data, "--hidden", "4", "--conv-channels", "4", "--n-boot", "5", "--quiet"]
    assert cli.main([str(a) for a in [*common, "--time-budget", "2", "--out", tmp_path / "budget"]]) == 0
    record = json.loads((tmp_path / "budget" / "metrics.json").read_text())
    chosen = record["recipe"]
    assert chosen["validation"]["mode"] == "cv" and record["val"]["n"] == 40  # 6 validation items: folds instead
    assert "machine_dependent" in chosen and "train_seconds" in record
    summary = (tmp_path / "budget" / "summary.txt").read_text()
    for needle in ("Recipe chosen within a 2 s time budget", "width: x1 ", "--recipe metrics.json",
                   "Chosen on out-of-fold predictions of cross-validation"):
        assert needle in summary, needle
    assert cli.main([str(a) for a in [*common, "--recipe", tmp_path / "budget" / "metrics.json",
                                      "--out", tmp_path / "again"]]) == 0
    first, second = (load(tmp_path / run / "model.pt") for run in ("budget", "again"))
    assert all(torch.equal(a, b) for a, b in zip(first.network.state_dict().values(),
                                                 second.network.state_dict().values()))
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test"]["auroc"] == record["test"]["auroc"]
    capsys.readouterr()
    assert cli.main([str(a) for a in [*common, "--time-budget", "4", "--epochs", "2", "--out", tmp_path / "x"]]) == 2
    assert "--epochs fix it by hand" in capsys.readouterr().err

"""``medkern bench --family networks`` on a tiny network: the table, the CSV rows, and the check that keeps a
variant disagreeing with torch from being timed. The variants are passed in, so nothing here needs
``medkern.optimize`` to exist."""
import csv
import importlib.util
import math

import pytest
import torch
from torch import nn

import medkern
from medkern.bench import networks, runner, training


def _tiny():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


TINY = networks.NetworkCase("tiny", _tiny, (1, 8, 8))


def _broken(model, x):
    raise RuntimeError("compiler crashed")


def _unavailable(model, x):
    raise networks.Skip("not installed here")


VARIANTS = {"eager": networks.VARIANTS["eager"],
            "medkern": lambda model, x: medkern.patch(model),  # stands in for medkern.optimize
            "wrong": lambda model, x: (lambda x: model(x) * 1.01),
            "broken": _broken, "absent": _unavailable}


def test_rows_table_and_csv_and_a_wrong_variant_is_not_timed(tmp_path):
    printed = []
    out = tmp_path / "networks.csv"
    rows = networks.run(cases=[TINY], variants=VARIANTS, repeats=1, min_round_s=1e-4, csv_path=out,
                        print_fn=printed.append)
    assert [(r["batch"], r["variant"]) for r in rows] == [(b, v) for b in networks.BATCHES for v in VARIANTS]
    status = {r["variant"]: r["status"] for r in rows if r["batch"] == 1}
    assert status == {"eager": "ok", "medkern": "ok", "wrong": "mismatch", "broken": "error", "absent": "skipped"}
    for r in rows:
        assert set(r) == set(networks.CSV_FIELDS)
        assert (r["ms_per_batch"] > 0 and r["rel_error"] <= networks.TOLERANCE) == (r["status"] == "ok")
        if r["status"] != "ok":
            assert math.isnan(r["ms_per_batch"]) and r["detail"]
    medkern_b32 = next(r for r in rows if r["batch"] == 32 and r["variant"] == "medkern")
    assert medkern_b32["items_per_s"] == pytest.approx(32e3 / medkern_b32["ms_per_batch"])
    assert medkern_b32["threads"] == torch.get_num_threads() and medkern_b32["torch_version"] == torch.__version__

    text = "\n".join(printed)
    assert "vs eager" in text and "FAIL" in text and "wrong MISMATCH: max abs error" in text
    assert "broken ERROR: RuntimeError: compiler crashed" in text and "absent SKIPPED: not installed here" in text
    assert "FAILED (4): tiny_b1 broken, tiny_b1 wrong, tiny_b32 broken, tiny_b32 wrong" in text
    table = [line.split() for line in printed if line.startswith("tiny")]
    assert len(table) == 2 and all(float(line[-4].rstrip("x")) > 0 for line in table)  # medkern vs eager

    with out.open(newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == networks.CSV_FIELDS and len(written) == len(rows)
    if importlib.util.find_spec("matplotlib"):  # the chart is drawn where matplotlib is installed
        assert out.with_suffix(".png").stat().st_size > 0


def test_check_rejects_errors_shapes_and_nan():
    reference = torch.randn(3, 2, dtype=torch.float64)
    assert networks.check(reference.float(), reference) < 1e-6
    for bad in (reference * 1.01, reference[:2], torch.full_like(reference, float("nan")), (reference,)):
        with pytest.raises(networks.Mismatch):
            networks.check(bad, reference)


def test_onnxrt_variant_agrees_with_torch():
    for module in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(module)
    model = networks.prepared(TINY)
    results = networks.measure(model, torch.randn(2, 1, 8, 8), {"onnxrt": networks.VARIANTS["onnxrt"]},
                               device="cpu", repeats=1, min_round_s=1e-4)
    assert results["onnxrt"]["status"] == "ok", results["onnxrt"]["detail"]


def test_slow_rows_only_when_named_and_networks_only_in_float32():
    names = [case.row_name(b) for case, b in networks.plan(networks.CASES, "")[0]]
    assert "monai_resnet18_224_b1" in names and "monai_resnet18_224_b32" not in names
    assert [case.row_name(b) for case, b in networks.plan(networks.CASES, "monai_resnet18_224_b32")[0]] == [
        "monai_resnet18_224_b32"]
    assert [case.row_name(b) for case, b in networks.plan(networks.CASES, "resnet18_28")[0]] == [
        "monai_resnet18_28_b1", "monai_resnet18_28_b32"]
    with pytest.raises(ValueError, match="float32"):
        runner.run(family=runner.NETWORKS, dtype=torch.float64)


def _tiny_volume():
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
                         nn.Conv3d(4, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 2))


TINY_TRAINING = training.TrainingCase(networks.NetworkCase("tiny3d", _tiny_volume, (1, 8, 8, 8)), 2)


def test_training_steps_are_checked_then_timed(tmp_path, monkeypatch):
    variants = {"eager": training.VARIANTS["eager"], "medkern": training.VARIANTS["medkern"],
                "wrong": lambda model: (lambda x: model(x) * 1.01)}
    monkeypatch.setattr(training, "VARIANTS", variants)
    out = tmp_path / "training.csv"
    printed = []
    rows = training.run(cases=[TINY_TRAINING], repeats=1, min_round_s=1e-4, csv_path=out, print_fn=printed.append)
    status = {r["variant"]: r["status"] for r in rows}
    assert status == {"eager": "ok", "medkern": "ok", "wrong": "mismatch"}
    assert all(math.isnan(r["ms_per_step"]) == (r["status"] != "ok") for r in rows)
    assert any("wrong MISMATCH" in line for line in printed)
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == 3
    assert [c.name for c in training.CASES if not c.opt_in] == ["monai_resnet18_3d_28_b8"]

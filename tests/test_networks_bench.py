"""``medkern bench --family networks`` (inference) and ``--family networks --train`` (training steps) on tiny
networks: the table, the CSV rows, and the check that keeps a variant disagreeing with torch from being timed.
The variants are passed in, so nothing here needs ``medkern.optimize`` to exist."""
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


def _broken(*args):  # a networks variant gets (model, x), a training variant (model)
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


class _TinyRecurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru, self.out = nn.GRU(1, 4, batch_first=True, bidirectional=True), nn.Linear(8, 2)

    def forward(self, x):  # (N, 1, L), as the ECG network's input
        return self.out(self.gru(x.transpose(1, 2))[0][:, -1])


def _tiny_generator():
    return nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3, padding=1),
                         nn.BatchNorm2d(2), nn.ReLU(), nn.Conv2d(2, 1, 3, padding=1), nn.Tanh())


def _tiny_discriminator():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 1))


TINY_TRAINING = [
    training.classifier(TINY, 2),
    training.classifier(networks.NetworkCase("tiny_gru", _TinyRecurrent, (1, 12)), 3),
    training.gan("tiny_gan", networks.NetworkCase("generator", _tiny_generator, (4,)),
                 networks.NetworkCase("discriminator", _tiny_discriminator, (1, 4, 4)), 4),
]


def test_training_steps_are_checked_then_timed(tmp_path):
    """A classifier, a recurrent classifier and a GAN pair, each through check-then-time; inductor is left out
    (compiling each tiny graph would take most of a minute), the medkern backend is in."""
    variants = {"eager": training.VARIANTS["eager"], "patch": training.VARIANTS["patch"],
                "medkern": training.VARIANTS["medkern"], "wrong": lambda model: (lambda x: model(x) * 1.01),
                "broken": _broken}
    out = tmp_path / "training.csv"
    printed = []
    rows = training.run(cases=TINY_TRAINING, variants=variants, repeats=1, min_round_s=1e-4, csv_path=out,
                        print_fn=printed.append)
    status = {(r["network"], r["variant"]): r["status"] for r in rows}
    for case in ("tiny", "tiny_gru", "tiny_gan"):
        assert {v: status[case, v] for v in variants} == {"eager": "ok", "patch": "ok", "medkern": "ok",
                                                           "wrong": "mismatch", "broken": "error"}, case
    assert all(math.isnan(r["ms_per_step"]) == (r["status"] != "ok") for r in rows)
    assert all(r["speedup_vs_eager"] > 0 for r in rows if r["status"] == "ok")
    text = "\n".join(printed)
    assert "wrong MISMATCH" in text and "broken ERROR: RuntimeError: compiler crashed" in text
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == len(rows) == 3 * len(variants)
    if importlib.util.find_spec("matplotlib"):
        assert out.with_suffix(".png").stat().st_size > 0


def test_training_dropout_is_off_and_a_gan_phase_updates_its_own_network():
    case = TINY_TRAINING[2]
    models = {k: training._trainable(networks.prepared(net)) for k, net in case.networks.items()}
    assert models["discriminator"].training and models["discriminator"][2].p == 0
    batch = case.inputs(case.batch, torch.Generator().manual_seed(0))
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-2) for k, m in models.items()}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in models.items()}
    training._step(case, models, models, optimizers, batch)
    for k, m in models.items():  # each network moved by its own phase
        assert all(not torch.equal(a, b) for a, b in zip(before[k], m.parameters())), k


def test_slow_training_cases_only_when_named(monkeypatch):
    assert [c.row_name for c in training.CASES if not c.opt_in] == [
        "monai_gan_28_b64", "image_resnet_b32", "ecg_conv_gru_b64", "image_gan_b64"]
    measured = []

    def measure(case, variants, **kwargs):
        measured.append(case.row_name)
        return {v: {"status": "ok", "detail": "", "rel_error": 0.0, "seconds": 1.0} for v in variants}
    monkeypatch.setattr(training, "measure", measure)
    printed = []
    training.run(select="densenet", print_fn=printed.append)
    assert measured == [] and any("--case monai_densenet121_64_b16" in line for line in printed)
    training.run(select="monai_densenet121_64_b16", print_fn=printed.append)
    assert measured == ["monai_densenet121_64_b16"]


@pytest.mark.parametrize("family", [["networks", "--train"], ["training"]])
def test_cli_train_flag_runs_the_training_family(monkeypatch, family):
    from medkern import cli

    calls = []
    monkeypatch.setattr(training, "run", lambda **kw: calls.append(kw) or [])
    assert cli.main(["bench", "--family", *family, "--case", "tiny", "--csv", ""]) == 0
    assert [c["select"] for c in calls] == ["tiny"]


def test_cli_train_flag_needs_the_networks_family(capsys):
    from medkern import cli

    assert cli.main(["bench", "--family", "conv", "--train"]) == 2
    assert "--train" in capsys.readouterr().err

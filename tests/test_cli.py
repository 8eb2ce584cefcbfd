"""The command line: info and a (tiny) bench run, as a user would type them."""
import csv
import subprocess
import sys

import pytest


def _medkern(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "medkern", *args], capture_output=True, text=True, timeout=timeout)


def test_info_lists_build_and_backends():
    proc = _medkern("info")
    assert proc.returncode == 0, proc.stderr
    for needle in ("medkern", "CPU module: ISA", "OpenMP", "CUDA module", "native:", "numba:", "cupy:", "reference:"):
        assert needle in proc.stdout


def test_bench_prints_ratios_and_appends_csv(tmp_path):
    out = tmp_path / "bench.csv"
    proc = _medkern("bench", "--case", "overhead", "--repeats", "1", "--min-round", "0.001", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "per-call overhead" in proc.stdout and "ratio" in proc.stdout
    rows = list(csv.DictReader(out.open()))
    assert rows and {"op", "backend", "shape", "dtype", "medkern_ms", "torch_ms", "ratio", "device_name", "threads",
                     "commit"} <= set(rows[0])
    assert float(rows[0]["medkern_ms"]) > 0 and float(rows[0]["ratio"]) > 0


def test_bad_arguments_exit_nonzero():
    assert _medkern("bench", "--dtype", "int8").returncode != 0
    assert _medkern("frobnicate").returncode != 0


def test_demo_trains_reports_and_times_both_layer_kinds(tmp_path, capsys):
    """The main job in-process, shrunk to seconds."""
    from medkern import cli

    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--n-train", "48", "--n-test", "24", "--epochs", "1",
                     "--speed-repeats", "1", "--n-boot", "10", "--gan-epochs", "2", "--volume-epochs", "1"]) == 0
    text = capsys.readouterr().out
    assert "synthesis: conditional ImageGAN trained" in text and "memorisation ratio" in text
    assert {"metrics.json", "samples.png", "losses.png"} <= {p.name for p in (out / "synthesis").iterdir()}
    assert "patched CNN vs torch" in text and "4 layers swapped" in text
    assert "image: ImageClassifier trained" in text and "ecg: SequenceClassifier trained" in text
    assert "volume: VolumeClassifier trained" in text
    for model in ("image ResNet", "ECG conv+GRU", "conditional DCGAN"):
        rows = [line for line in text.splitlines() if line.startswith(model)]
        assert len(rows) == 2 and all(float(r.split()[-1].rstrip("x")) > 0 for r in rows)
    for name, explain in (("image", "gradcam.png"), ("ecg", "saliency.png"), ("volume", "gradcam.png")):
        assert {"metrics.json", "history.csv", "curves.png", "roc.png", "pr.png", "confusion.png", "calibration.png",
                explain} <= {p.name for p in (out / name).iterdir()}


def _run(capsys, *args):
    from medkern import cli

    assert cli.main([str(a) for a in args]) == 0
    return capsys.readouterr().out


HEADLINE = ("auroc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1")
TINY = ("--epochs", "1", "--n-boot", "20", "--quiet")


def test_train_classify_evaluate_predict(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    run = tmp_path / "run"
    text = _run(capsys, "train", "classify", "--out", run, "--n-train", "40", "--n-test", "20", "--width", "4",
                "--depth", "2", "--batch-size", "8", *TINY)
    assert "test metrics" in text and "auroc" in text
    record = json.loads((run / "metrics.json").read_text())
    assert set(HEADLINE) <= set(record["test"]) and set(HEADLINE) <= set(record["test"]["ci"])
    assert record["model"] == "ImageClassifier" and record["data"].startswith("synthetic:lesions")
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,lr,train_loss") and len(history) == 2
    assert {"model.pt", "checkpoint.pt", "curves.png", "roc.png", "pr.png", "confusion.png", "calibration.png",
            "gradcam.png"} <= {p.name for p in run.iterdir()}
    text = _run(capsys, "evaluate", run, "--n-train", "10", "--n-test", "30", "--n-boot", "20")
    assert "metrics on synthetic:lesions" in text and (run / "eval-synthetic" / "metrics.json").is_file()
    img = (np.random.default_rng(0).random((28, 28, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", np.random.default_rng(1).random((2, 3, 28, 28)).astype(np.float32))
    rows = [json.loads(line) for line in _run(capsys, "predict", run, tmp_path / "a.png", tmp_path / "b.npy")
            .splitlines()]
    assert [r["input"] for r in rows] == [str(tmp_path / "a.png"), f"{tmp_path / 'b.npy'}[0]",
                                          f"{tmp_path / 'b.npy'}[1]"]
    assert all(r["class"] in ("benign", "malignant") and sum(r["probabilities"].values()) == pytest.approx(1)
               for r in rows)
    # resume of a finished run trains no further epochs and rewrites the same report
    _run(capsys, "train", "classify", "--out", run, "--n-train", "40", "--n-test", "20", "--width", "4",
         "--depth", "2", "--batch-size", "8", "--resume", *TINY)
    assert len((run / "history.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize("labels", [(1,), ()], ids=["labels-N1", "labels-N"])
def test_train_classify_medmnist_3d_evaluate_predict(tmp_path, capsys, labels):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 8), ("test", 10)):
        y = np.arange(n) % 2
        x = rng.integers(0, 100, (n, 10, 10, 10), dtype=np.uint8)
        x[y == 1, :5] += 150  # learnable, not that one epoch needs to learn it
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y.reshape(n, *labels)
    np.savez(tmp_path / "toy3d.npz", **arrays)
    run = tmp_path / "run"
    text = _run(capsys, "train", "classify", "--data", tmp_path / "toy3d.npz", "--out", run, "--width", "4",
                "--depth", "2", "--batch-size", "8", *TINY)
    assert "test metrics" in text
    record = json.loads((run / "metrics.json").read_text())
    assert record["model"] == "VolumeClassifier" and record["test"]["n"] == 10
    assert set(HEADLINE) <= set(record["test"]) and record["arch"]["width"] == 4
    assert {"model.pt", "history.csv", "roc.png", "gradcam.png"} <= {p.name for p in run.iterdir()}
    text = _run(capsys, "evaluate", run, "--data", tmp_path / "toy3d.npz", "--n-boot", "20")
    assert "metrics on" in text and (run / "eval-toy3d" / "metrics.json").is_file()
    np.save(tmp_path / "one.npy", arrays["test_images"][0])           # (D, H, W) uint8, as stored
    np.save(tmp_path / "batch.npy", arrays["test_images"][:2, None] / 255.0)  # (N, C, D, H, W) in [0, 1]
    rows = [json.loads(line) for line in _run(capsys, "predict", run, tmp_path / "one.npy", tmp_path / "batch.npy")
            .splitlines()]
    assert [r["input"] for r in rows] == [str(tmp_path / "one.npy"), f"{tmp_path / 'batch.npy'}[0]",
                                          f"{tmp_path / 'batch.npy'}[1]"]
    assert rows[0]["probabilities"] == pytest.approx(rows[1]["probabilities"], abs=1e-5)  # uint8 scaled as in training


def test_train_an_ensemble_evaluate_and_resume(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    args = ("train", "classify", "--out", run, "--n-train", "32", "--n-test", "16", "--width", "4", "--depth", "2",
            "--batch-size", "8", "--ensemble", "2", *TINY)
    _run(capsys, *args)
    record = json.loads((run / "metrics.json").read_text())
    assert set(HEADLINE) <= set(record["test"])
    assert {"model.pt", "gradcam.png", "member0", "member1"} <= {p.name for p in run.iterdir()}
    assert all((run / f"member{i}" / "checkpoint.pt").is_file() for i in range(2))
    from medkern.models import load
    assert load(run / "model.pt").ensemble == 2
    _run(capsys, *args, "--resume")  # both members finished: nothing more to train, same report
    assert json.loads((run / "metrics.json").read_text())["test"]["auroc"] == record["test"]["auroc"]
    assert "metrics on" in _run(capsys, "evaluate", run, "--n-train", "10", "--n-test", "16", "--n-boot", "20")


def test_train_sequence_on_ucr_files(tmp_path, capsys):
    import json

    import numpy as np

    rng = np.random.default_rng(0)

    def ucr(path, n):
        y = np.arange(n) % 2
        x = rng.normal(size=(n, 30)) + 2.0 * y[:, None] * np.sin(np.linspace(0, 3, 30))
        np.savetxt(path, np.column_stack([np.where(y == 1, 1, -1), x]))
    ucr(tmp_path / "T_TRAIN.txt", 40)
    ucr(tmp_path / "T_TEST.txt", 20)
    run = tmp_path / "seq"
    _run(capsys, "train", "sequence", "--data", tmp_path / "T_TRAIN.txt", "--test", tmp_path / "T_TEST.txt",
         "--out", run, "--rnn", "lstm", "--hidden", "4", "--conv-channels", "4", "--no-bidirectional",
         "--class-weight", "balanced", "--loss", "focal", "--threshold", "sensitivity:0.9", "--ema", "0.9", *TINY)
    record = json.loads((run / "metrics.json").read_text())
    assert record["test"]["n"] == 20 and record["arch"]["rnn"] == "lstm" and not record["arch"]["bidirectional"]
    assert record["train"]["loss"] == "focal" and record["train"]["target_sensitivity"] == 0.9
    assert record["train"]["ema"] == 0.9 and record["train"]["class_weight"] == "balanced"
    assert (run / "saliency.png").is_file()
    rows = _run(capsys, "predict", run, tmp_path / "T_TEST.txt").splitlines()
    assert len(rows) == 20 and json.loads(rows[0])["input"].endswith("T_TEST.txt[0]")


def test_train_forecast(tmp_path, capsys):
    import json

    run = tmp_path / "fc"
    text = _run(capsys, "train", "forecast", "--out", run, "--n-train", "40", "--n-test", "10", "--hidden", "4",
                *TINY)
    assert "mae" in text
    record = json.loads((run / "metrics.json").read_text())
    assert {"mae", "rmse", "mape"} <= set(record["test"]) and (run / "forecast.png").is_file()


def test_train_reports_bad_data_by_name(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    proc = _medkern("train", "classify", "--data", str(bad), "--out", str(tmp_path / "r"), "--quiet")
    assert proc.returncode != 0 and "broken.npz" in proc.stderr


def test_train_synthesize_and_sample(tmp_path, capsys):
    import json

    from PIL import Image

    run = tmp_path / "gan"
    text = _run(capsys, "train", "synthesize", "--out", run, "--n-train", "40", "--n-test", "20", "--width", "4",
                "--latent-dim", "8", "--batch-size", "8", "--epochs", "2", "--classifier-epochs", "1",
                "--loss", "lsgan", "--penalty", "wgan-gp", "--n-boot", "20", "--quiet")
    assert "sample quality" in text and "fd of blurred real" in text and "augmentation: AUROC" in text
    record = json.loads((run / "metrics.json").read_text())
    for key in ("fd", "kid", "precision", "recall", "diversity_ms_ssim", "memorization_ratio"):
        assert isinstance(record[key], float), key
    assert record["train"]["loss"] == "lsgan" and record["train"]["penalty"] == "wgan-gp" and record["epochs_run"] == 2
    aug = record["augmentation"]
    assert {"auroc_real", "auroc_real_plus_synthetic", "sensitivity_real", "minority", "n_synthetic"} <= set(aug)
    assert aug["minority"] == 1 and aug["n_synthetic"] > 0  # synthetic lesions: malignant is the rarer class
    assert {"lo", "hi", "delta"} <= set(aug["runs"][0]["delta_auroc"])
    assert {"model.pt", "embedder.pt", "checkpoint.pt", "history.csv", "losses.png", "samples.png"} <= \
        {p.name for p in run.iterdir()}
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    out = tmp_path / "png"
    text = _run(capsys, "sample", run, "--n", "5", "--label", "1", "--out", out)
    assert "5 images" in text
    pngs = sorted(p.name for p in out.iterdir())
    assert pngs == ["class1_0000.png", "class1_0001.png", "class1_0002.png", "class1_0003.png", "class1_0004.png",
                    "grid.png"]
    assert Image.open(out / "class1_0000.png").size == (28, 28)
    proc = _medkern("sample", str(run), "--n", "2", "--label", "7")
    assert proc.returncode != 0 and "label" in proc.stderr


def _graded_ucr(path, n, seed):
    """UCR rows of ordered grades 1..4: the grade is how high a bump rises above the noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.normal(size=(n, 24))
    x[:, 8:16] += 1.5 * y[:, None]
    np.savetxt(path, np.column_stack([y + 1, x]))
    return path


@pytest.mark.parametrize("labels", ["nominal", "ordinal"])
def test_train_graded_signals_reports_each_class_kappa_and_summary(tmp_path, capsys, labels):
    import json

    train, test = _graded_ucr(tmp_path / "G_TRAIN.txt", 48, 0), _graded_ucr(tmp_path / "G_TEST.txt", 24, 1)
    run = tmp_path / labels
    text = _run(capsys, "train", "sequence", "--data", train, "--test", test, "--out", run, "--task", labels,
                "--hidden", "4", "--conv-channels", "0", "--batch-size", "16", *TINY)
    record = json.loads((run / "metrics.json").read_text())
    ordinal = labels == "ordinal"
    assert record["ordinal"] is ordinal and record["train"]["loss"] == ("cumulative" if ordinal else "ce")
    m = record["test"]
    assert list(m["per_class"]) == ["1", "2", "3", "4"] and m["n"] == 24
    assert all(set(c) == {"sensitivity", "ppv", "auroc"} for c in m["per_class"].values())
    assert ("quadratic_weighted_kappa" in m) is ordinal and ("quadratic_weighted_kappa" in text) is ordinal
    assert {"temperature", "before", "after"} <= set(m["calibration"])
    summary = (run / "summary.txt").read_text()
    for needle in ("SequenceClassifier", "RecurrentNet", "hidden 4", "up to 1 epochs", "G_TRAIN.txt",
                   f"temperature {record['temperature']:.3f}: minimises validation NLL",
                   f"AUROC (macro, one-vs-rest): {m['auroc']:.3f} (95% CI",
                   f"accuracy (argmax): {m['accuracy_argmax']:.3f}",
                   f"balanced accuracy (argmax): {m['balanced_accuracy_argmax']:.3f}", "Se      +P   AUROC"):
        assert needle in summary, needle
    assert (f"quadratic-weighted kappa: {m['quadratic_weighted_kappa']:.3f}" in summary if ordinal else
            "kappa" not in summary)


@pytest.mark.parametrize("flag, ordinal", [((), True), (("--task", "nominal"), False)],
                         ids=["from-metadata", "overridden"])
def test_ordinal_grades_detected_from_the_data(tmp_path, capsys, flag, ordinal):
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 24), ("val", 12), ("test", 12)):
        y = np.arange(n) % 3
        arrays[f"{split}_images"] = (rng.random((n, 10, 10)) * 80 + 60 * y[:, None, None]).astype(np.uint8)
        arrays[f"{split}_labels"] = y.reshape(n, 1)
    np.savez(tmp_path / "grades.npz", task=np.array("ordinal-regression"), **arrays)
    run = tmp_path / "run"
    _run(capsys, "train", "classify", "--data", tmp_path / "grades.npz", "--out", run, "--width", "4", "--depth", "2",
         "--batch-size", "8", *flag, *TINY)
    record = json.loads((run / "metrics.json").read_text())
    assert record["ordinal"] is ordinal and ("quadratic_weighted_kappa" in record["test"]) is ordinal

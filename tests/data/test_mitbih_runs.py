"""A folder of WFDB records end to end, on crafted records: ``medkern train sequence --data DIR`` (split by record,
the RR features in the saved model, evaluate and predict reloading them) and leave-records-out
cross-validation, through the API and ``--cv-records``."""
import json

import numpy as np
import pytest

from medkern import cli
from medkern.data.mitbih import RR_FEATURES, read_beat_folder
from medkern.models import load, runs
from medkern.models.record_cv import cross_validate_records, se_ppv_table

from ._wfdb_files import write_beat_folder

SMALL = ["--epochs", "1", "--hidden", "8", "--conv-channels", "4", "--n-boot", "0", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_beat_folder(tmp_path_factory.mktemp("records"), n_records=6, beats=30)


def test_cross_validation_pools_folds_of_whole_records(folder, tmp_path):
    lines = []
    record = cross_validate_records(folder, folds=3, arch={"hidden": 8, "conv_channels": 4}, options={"epochs": 1},
                                    out=tmp_path, log=lines.append)
    assert any("left out 1 record(s), paced: p0" in line for line in lines)
    tests = [f["test_records"] for f in record["folds"]]
    assert sorted(sum(tests, [])) == [f"r{i}" for i in range(6)]  # every record tested once
    for fold in record["folds"]:
        assert fold["val_records"] and not set(fold["val_records"]) & set(fold["test_records"])
    m = record["test"]
    assert m["n"] == 6 * 30 and list(m["per_class"]) == ["N", "S", "V", "F", "Q"]
    assert json.loads((tmp_path / "metrics.json").read_text())["test"]["per_class"]["V"].keys() >= {"sensitivity",
                                                                                                     "ppv"}
    table = se_ppv_table(m)
    assert "Se" in table and "+P" in table and len(table.splitlines()) == 6


def test_cli_cv_records(folder, tmp_path, capsys):
    assert cli.main(["train", "sequence", "--data", str(folder), "--cv-records", "2", "--out", str(tmp_path),
                     *SMALL]) == 0
    out = capsys.readouterr().out
    assert "leave-records-out cross-validation, 2 folds" in out and "+P" in out
    assert (tmp_path / "metrics.json").is_file()


def test_cli_train_on_a_folder_keeps_the_rr_input(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "sequence", "--data", str(folder), "--test", str(folder), "--out", str(run),
                     *SMALL]) == 0
    model = load(run / "model.pt")
    assert model.shape["side_features"] == len(RR_FEATURES)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"N", "S", "V", "F", "Q"}
    again = runs.evaluate_run(run, folder, n_boot=0)
    assert again["test"]["n"] == 6 * 30
    # predict takes packed beats (window, then RR features), as the reader makes them
    x = read_beat_folder(folder, records=["r0"], log=None).data.x[:2].numpy()
    np.save(tmp_path / "beats.npy", x)
    rows = runs.predict_files(run, [tmp_path / "beats.npy"])
    assert len(rows) == 2 and set(rows[0]["probabilities"]) == {"N", "S", "V", "F", "Q"}

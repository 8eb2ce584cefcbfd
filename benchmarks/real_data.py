"""Quality on real data (``../shared/data`` or ``$MEDKERN_DATA``; rows whose files are absent are skipped), each
row the ``medkern`` command a new user would type: the CLI's defaults, with only ``--data``, ``--test`` where the
source has a separate test file, and ``--out``. The recipe (epochs, width, ensemble, test-time flips,
temperature, threshold) is chosen by the program on held-out data within its default time budget
(``medkern.train.recipe``); nothing here is tuned per data set, and the test split plays no part in any choice.

Targets (issue 22), on two CPU cores:

- BreastMNIST (28x28 ultrasound): test AUROC >= 0.92 and argmax accuracy >= 0.87, in under 5 minutes end to end;
- ECG200 (UCR, separate test file): test accuracy >= 0.90 (argmax);
- ECG5000 (UCR, 5 classes, its training file only: the test split is carved from it): macro AUROC >= 0.95;
- VesselMNIST3D (28^3 volumes): test AUROC >= 0.93 and argmax accuracy >= 0.93;
- MIT-BIH DS1 (the 22 training records of de Chazal et al. 2004; DS2 is not at hand): 5-fold leave-records-out
  cross-validation (``--cv-records 5``), pooled per class: VEB (V) Se and +P >= 0.90, SVEB (S) Se >= 0.80 and
  +P >= 0.50. Its targets name ``metrics.json["test"]`` entries by dotted path (``per_class.V.sensitivity``).

    python benchmarks/real_data.py [--only NAME ...] [--out DIR]

Wall times include starting Python; on a machine shared with other jobs they are pessimistic. A row is a
``Row``: add one to ``ROWS`` (its CLI arguments, relative to the data folder, and its targets). Prints one
table and PASS/MISS per target; exits 1 if a target is missed.
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from medkern.data import shared_data_dir


@dataclass
class Row:
    """One data set: ``medkern train TASK`` with ``data`` (and ``test``) under the data folder, and the targets
    on ``metrics.json["test"]`` (``wall_s``: the whole command's wall time, an upper bound)."""

    name: str
    task: str
    data: str
    test: str | None = None
    targets: dict = field(default_factory=dict)
    extra: tuple = ()  # further CLI arguments, for rows that need them (none of the defaults' rows do)

    def command(self, root: Path, out: Path) -> list[str]:
        args = [sys.executable, "-m", "medkern", "train", self.task, "--data", str(root / self.data),
                "--out", str(out / self.name), "--quiet", *self.extra]
        return args + (["--test", str(root / self.test)] if self.test else [])


# The protocol's training set (de Chazal et al. 2004): the folder also holds record 100, which belongs to DS2.
MITBIH_DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124", "201", "203", "205",
              "207", "208", "209", "215", "220", "223", "230")

ROWS = [
    Row("breastmnist", "classify", "medmnist/breastmnist.npz",
        targets={"auroc": 0.92, "accuracy_argmax": 0.87, "wall_s": 300.0}),
    Row("ecg200", "sequence", "ucr/ECG200_TRAIN.txt", "ucr/ECG200_TEST.txt", targets={"accuracy_argmax": 0.90}),
    Row("ecg5000", "sequence", "ucr/ECG5000_TRAIN.txt", targets={"auroc": 0.95}),
    Row("vesselmnist3d", "classify", "medmnist3d/vesselmnist3d.npz",
        targets={"auroc": 0.93, "accuracy_argmax": 0.93}),
    Row("mitbih-ds1", "sequence", "mitbih", extra=("--cv-records", "5", "--records", ",".join(MITBIH_DS1)),
        targets={"per_class.V.sensitivity": 0.90, "per_class.V.ppv": 0.90, "per_class.S.sensitivity": 0.80,
                 "per_class.S.ppv": 0.50}),
]


def run(row: Row, root: Path, out: Path) -> dict:
    """The row's command, timed; its metrics.json with ``wall_s`` added."""
    t0 = time.perf_counter()
    proc = subprocess.run(row.command(root, out), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{row.name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    record = json.loads((out / row.name / "metrics.json").read_text())
    return {**record, "wall_s": wall}


def recipe_text(record: dict) -> str:
    """The chosen recipe in a few words: held-out plan, width, members x networks, epochs, flips."""
    r = record.get("recipe")
    if "protocol" in record:  # a cross-validation: its options
        return f"{record['protocol']}, {record['options']['epochs']} epochs, cap {record['cap']}"
    if not r:
        return f"by hand: ensemble {record.get('ensemble', 1)}, {record['train']['epochs']} epochs"
    v = r["validation"]
    plan = f"{v['folds']}-fold CV" if v["mode"] == "cv" else "val split"
    flips = ", flips" if record.get("arch", {}).get("flip_average") else ""
    return (f"{plan}, width x{r['width']['chosen']:g}, {len(r['units'])} member(s) = {r['networks']} nets, "
            f"{r['epochs']}/{r['member_epochs']} epochs{flips}, T {r['temperature']:.2f}")


def table(results: list[tuple[Row, dict]]) -> list[str]:
    lines = [f"{'data set':<14} {'AUROC':>6} {'acc(argmax)':>11} {'bal.acc':>7} {'wall s':>7}  recipe"]
    for row, rec in results:
        t = rec["test"]
        lines.append(f"{row.name:<14} {t['auroc']:>6.4f} {t['accuracy_argmax']:>11.4f} "
                     f"{t['balanced_accuracy_argmax']:>7.4f} {rec['wall_s']:>7.0f}  {recipe_text(rec)}")
    return lines


def verdicts(row: Row, rec: dict) -> list[tuple[bool, str]]:
    out = []
    for key, target in row.targets.items():
        value = rec["wall_s"] if key == "wall_s" else functools.reduce(dict.get, key.split("."), rec["test"])
        ok = value <= target if key == "wall_s" else value >= target
        out.append((ok, f"{'PASS' if ok else 'MISS'} {row.name} {key} {value:.4f} "
                        f"{'<=' if key == 'wall_s' else '>='} {target}"))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=[r.name for r in ROWS])
    parser.add_argument("--out", default="real-data-runs", help="run folders (metrics.json, summary.txt, plots)")
    args = parser.parse_args(argv)
    root = shared_data_dir()
    if root is None:
        print("real data not found (set MEDKERN_DATA or provide ../shared/data): skipped")
        return 0
    results = []
    for row in ROWS:
        if args.only and row.name not in args.only:
            continue
        if not (root / row.data).exists():
            print(f"{row.name}: {root / row.data} not found: skipped")
            continue
        results.append((row, run(row, root, Path(args.out))))
        print(table(results)[-1], flush=True)
    print("\n" + "\n".join(table(results)))
    checks = [v for row, rec in results for v in verdicts(row, rec)]
    print("\n".join(text for _, text in checks))
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

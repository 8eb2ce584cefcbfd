"""The command line: info and a (tiny) bench run, as a user would type them."""
import csv
import subprocess
import sys


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


def test_demo_checks_a_patched_model_then_benchmarks(monkeypatch, capsys):
    """The main job in-process, with the (minutes-long) benchmark replaced by a recorder."""
    from medkern import cli
    from medkern.bench import runner

    calls = []
    monkeypatch.setattr(runner, "run", lambda **kwargs: calls.append(kwargs))
    assert cli.main(["demo", "--csv", ""]) == 0
    out = capsys.readouterr().out
    assert "patched CNN vs torch" in out and "4 layers swapped" in out
    assert calls and calls[0]["device"] == "cpu"

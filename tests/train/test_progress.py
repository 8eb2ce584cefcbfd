"""Output options change what is shown, never what is computed: the trained weights are bitwise the same with
progress bars on a terminal, with bars asked for but output going to a file, with --quiet, and with or without
the per-epoch log; off a terminal, no bar (and no carriage return) reaches the log."""
import sys

import pytest
import torch

from medkern.models import runs

# A small sequence classifier on synthetic ECG: dropout and shuffling draw from torch's global generator,
# so a display path that draws too would change the weights.
TRAIN = dict(options={"epochs": 2, "batch_size": 16}, reader={"n_train": 96, "n_test": 16}, n_boot=5,
             arch={"hidden": 8})


def _weights(tmp_path, name, *, progress, log, terminal, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    out = tmp_path / name
    runs.train_run("sequence", out, options={**TRAIN["options"], "progress": progress}, log=log,
                   reader=TRAIN["reader"], n_boot=TRAIN["n_boot"], arch=TRAIN["arch"])
    state = torch.load(out / runs.MODEL_FILE, weights_only=True)

    def tensors(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from tensors(v, f"{prefix}{k}.")
            elif torch.is_tensor(v):
                yield f"{prefix}{k}", v
    return dict(tensors(state))


def test_display_options_leave_the_weights_bitwise_identical(tmp_path, monkeypatch, capsys):
    lines = []
    bars = _weights(tmp_path, "bars", progress=True, log=lines.append, terminal=True, monkeypatch=monkeypatch)
    assert "\r" in capsys.readouterr().err, "a terminal shows the bar"
    to_file = _weights(tmp_path, "file", progress=True, log=print, terminal=False, monkeypatch=monkeypatch)
    captured = capsys.readouterr()
    quiet = _weights(tmp_path, "quiet", progress=False, log=None, terminal=False, monkeypatch=monkeypatch)
    assert bars.keys() == to_file.keys() == quiet.keys() and len(bars) > 4
    for k in bars:
        assert torch.equal(bars[k], to_file[k]) and torch.equal(bars[k], quiet[k]), k
    # Off a terminal: one line per epoch, no bar.
    assert "\r" not in captured.err and "\r" not in captured.out
    assert sum(line.startswith("epoch ") for line in captured.out.splitlines()) == 2
    assert sum(line.startswith("epoch ") for line in lines) == 2


@pytest.mark.parametrize("terminal", [True, False])
def test_gan_epoch_does_not_depend_on_the_bar(terminal, monkeypatch):
    """The GAN loop's batches go through the same helper: the random draws after an epoch are the same
    with and without a bar."""
    from medkern.train.progress import Batches

    loader = torch.utils.data.DataLoader(torch.arange(40.0), batch_size=8, shuffle=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    draws = []
    for desc in (None, "epoch 1/1"):
        torch.manual_seed(0)
        batches = Batches(loader, desc)
        seen = [b.tolist() for b in batches]
        batches.show(loss="0.1")
        draws.append((seen, torch.rand(3).tolist()))
    assert draws[0] == draws[1]

"""DistributedDataParallel: two CPU processes under torchrun (gloo), each with half the global batch,
train to the same weights as one process with the whole batch."""
import os
import subprocess
import sys

import torch

from medkern.models import SequenceClassifier
from medkern.train import load_checkpoint


def _train(out, nproc, port):
    # No batch norm (conv_channels 0), no dropout, no augmentation: with them each process would draw or
    # normalise over its own half of the batch, and the runs would differ by design, not by a bug.
    args = ["-m", "medkern", "train", "sequence", "--data", "synthetic", "--n-train", "40", "--n-test", "16",
            "--out", str(out), "--epochs", "2", "--batch-size", "8", "--hidden", "6", "--conv-channels", "0",
            "--dropout", "0", "--no-augment", "--n-boot", "10", "--quiet", "--device", "cpu"]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
                f"--master_port={port}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_checkpoint(out / "model.pt")["state_dict"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    single = _train(tmp_path / "single", 1, 0)
    double = _train(tmp_path / "ddp", 2, 29500 + os.getpid() % 1000)
    assert single.keys() == double.keys()
    for k in single:
        torch.testing.assert_close(double[k], single[k], atol=2e-5, rtol=1e-4, msg=k)
    # Training really happened: the weights moved from their seeded start.
    start = SequenceClassifier(hidden=6, conv_channels=0, dropout=0.0)
    start.shape = {"in_channels": 1, "num_classes": 2, "length": 187}
    initial = start._build().state_dict()
    assert any(not torch.allclose(initial[k], single[k]) for k in single if k.startswith("rnn."))
    assert (tmp_path / "ddp" / "metrics.json").is_file()

"""Checkpoints that a killed run never leaves half-written: write a temporary file beside the target,
flush it to disk, then ``os.replace`` (atomic on POSIX and Windows). Read back with ``weights_only=True``,
so a checkpoint can hold only tensors and plain containers, never code."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path, map_location="cpu"):
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise ValueError(f"{path}: not a readable medkern checkpoint ({type(e).__name__}: {e})") from e

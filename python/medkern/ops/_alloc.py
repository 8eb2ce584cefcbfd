"""Output allocation for the ops. With MEDKERN_POISON=1 (the test suite sets it) every output buffer is
filled with NaN before a kernel runs, so an element a kernel forgets to write fails the comparison."""
from __future__ import annotations

import os

import torch

POISON = os.environ.get("MEDKERN_POISON", "") == "1"


def empty(shape, like: torch.Tensor) -> torch.Tensor:
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    if POISON:
        out.fill_(float("nan"))
    return out

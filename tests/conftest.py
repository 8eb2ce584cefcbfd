"""Test-wide setup: poisoned outputs, the backend/device grid and the float64 oracle helpers."""
import os

# Every op output starts as NaN, so an element a kernel forgets to write fails its comparison.
os.environ["MEDKERN_POISON"] = "1"

import contextlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import medkern  # noqa: E402

HAS_GPU = torch.cuda.is_available()


def backend_devices():
    """Every (backend, device) pair that works here; unavailable ones appear as skips with the reason."""
    params = []
    for name, status in medkern.backends.available().items():
        for device, why in status.devices.items():
            marks = [pytest.mark.gpu] if device == "cuda" else []
            if why is not None:
                marks.append(pytest.mark.skip(reason=f"{name}/{device}: {why}"))
            params.append(pytest.param((name, device), id=f"{name}-{device}", marks=marks))
    return params


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """Relative error in the Frobenius norm, in float64; NaN anywhere in `got` gives inf."""
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    if not torch.isfinite(got).all():
        return float("inf")
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


class _Passthrough(TorchDispatchMode):
    """An active dispatch mode changes nothing but makes a call look traced to the ops (``route`` picks
    the custom op), so that they take their ``torch.library`` custom ops instead of the eager autograd.Functions."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


ROUTES = ["eager", "custom_op"]


def route_context(route: str):
    """Context for calling an op through ``route`` (one of ROUTES)."""
    return _Passthrough() if route == "custom_op" else contextlib.nullcontext()

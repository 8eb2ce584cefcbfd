"""Shared pieces of the recurrent tests: the backend grid (backends without a recurrent implementation
appear as skips with the reason) and torch/medkern module pairs with the same weights."""
from __future__ import annotations

import importlib.util

import pytest
import torch

import medkern
from conftest import backend_devices

_PACKAGES = {"native": "native", "numba": "numba_{device}", "cupy": "cupy_", "reference": "reference"}


def rnn_backend_devices():
    params = []
    for p in backend_devices():
        name, device = p.values[0]
        package = f"medkern.backends.{_PACKAGES[name].format(device=device)}.rnn"
        marks = list(p.marks)
        if importlib.util.find_spec(package) is None:
            marks.append(pytest.mark.skip(reason=f"{name}/{device}: no recurrent kernels in this backend"))
        params.append(pytest.param((name, device), id=p.id, marks=marks))
    return params


def module_pair(kind: str, *args, dtype=torch.float64, device="cpu", seed=0, **kw):
    """(torch module, medkern module) with identical weights."""
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "lstm_cell": torch.nn.LSTMCell,
           "gru_cell": torch.nn.GRUCell}[kind]
    ref = cls(*args, **kw).to(device, dtype)
    ours = getattr(medkern.nn, cls.__name__)(*args, **kw).to(device, dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def grads(outputs, inputs, weights):
    """Gradients of a random weighting of `outputs` (tensors) w.r.t. `inputs`; `weights` fixed by the caller."""
    loss = sum((o * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, inputs, allow_unused=True)

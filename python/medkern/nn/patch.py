"""``medkern.patch(model)``: swap torch layers for medkern's in place. Each kernel family registers its
torch class -> medkern class pairs here; a medkern class must be a subclass of the torch class that
changes only the computation, so the swap is a class change that keeps every parameter, buffer, hook
and optimizer reference."""
from __future__ import annotations

import torch

_SWAPS: dict[type, type] = {}
_SUPPORTED_DTYPES = (torch.float32, torch.float64)


def register_swap(torch_cls: type, medkern_cls: type) -> None:
    if not issubclass(medkern_cls, torch_cls):
        raise TypeError(f"{medkern_cls.__name__} must subclass {torch_cls.__name__} to be swapped in place")
    _SWAPS[torch_cls] = medkern_cls


def _swappable(module: torch.nn.Module) -> bool:
    # Exact type only: a user's subclass may override forward, which the swap would silently drop.
    if type(module) not in _SWAPS:
        return False
    return all(p.dtype in _SUPPORTED_DTYPES for p in module.parameters(recurse=False))


def patch(model: torch.nn.Module) -> torch.nn.Module:
    """Replaces, in place, every layer of ``model`` (itself included) that medkern implements, keeping
    its weights, and returns ``model``. Layers in dtypes medkern does not compute are left alone."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if _swappable(module):
            module.__class__ = _SWAPS[type(module)]
    return model

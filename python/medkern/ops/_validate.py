"""Argument validation for every op, in one place. Errors name the argument: TypeError for a wrong type
or dtype, ValueError for a wrong value, rank, shape or device."""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from .._geometry import ACTIVATIONS

FLOAT_DTYPES = (torch.float32, torch.float64)


def tensor(t, name: str, ranks: Sequence[int], dtypes=FLOAT_DTYPES) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name}: dtype {t.dtype} is not supported (expected one of "
                        f"{', '.join(str(d) for d in dtypes)})")
    if t.dim() not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{name}: expected a {want}-D tensor, got shape {tuple(t.shape)}")
    if not (t.is_cpu or t.is_cuda):  # (t.device.type costs ten times as much)
        raise ValueError(f"{name}: device {t.device} is not supported (cpu or cuda)")
    return t


def same_device_dtype(ref: torch.Tensor, ref_name: str, **others: torch.Tensor | None) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if not (t.is_cpu and ref.is_cpu) and t.device != ref.device:
            raise ValueError(f"{name}: on {t.device}, but {ref_name} is on {ref.device}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{name}: dtype {t.dtype} differs from {ref_name}'s {ref.dtype}")


def integer(v, name: str, minimum: int | None = None) -> int:
    if type(v) is int:  # the common case, without the slow ABC check below
        if minimum is not None and v < minimum:
            raise ValueError(f"{name}: must be >= {minimum}, got {v}")
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    return v


def int_tuple(v, name: str, n: int, minimum: int | None = None) -> tuple[int, ...]:
    """An int broadcast to n values, or a sequence of exactly n ints."""
    if type(v) is int:
        return (integer(v, name, minimum),) * n
    if isinstance(v, (str, bytes)) or not isinstance(v, (numbers.Integral, Sequence)) or isinstance(v, bool):
        raise TypeError(f"{name}: expected an int or a sequence of {n} ints, got {v!r}")
    if isinstance(v, numbers.Integral):
        v = (v,) * n
    if len(v) != n:
        raise ValueError(f"{name}: expected {n} values, got {len(v)}")
    return tuple(integer(x, name, minimum) for x in v)


def activation(activation, negative_slope) -> tuple[int, float]:
    """(ACTIVATIONS code, slope). The backward reads the activation's derivative off the output, which
    only works for slopes >= 0 (with a negative slope a positive output can come from a negative input)."""
    if activation is None:
        return 0, 0.0
    if activation not in ("relu", "leaky_relu"):
        raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")
    if activation == "relu":
        return ACTIVATIONS["relu"], 0.0
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        raise TypeError(f"negative_slope: expected a float, got {type(negative_slope).__name__}")
    if not 0.0 <= negative_slope < float("inf"):
        raise ValueError(f"negative_slope: the fused leaky_relu needs a finite slope >= 0, got {negative_slope}")
    return ACTIVATIONS["leaky_relu"], float(negative_slope)

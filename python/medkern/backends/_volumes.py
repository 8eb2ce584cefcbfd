"""Planes as volumes of depth one, for backends whose kernels are written for volumes only: a 2-d call
runs them with a depth axis of size 1 and one tap along it (stride 1, no padding, no dilation), which
computes exactly the 2-d result and the 2-d flat indices (d = 0)."""
from __future__ import annotations

# What a missing depth axis is, per geometry field of PoolParams / ConvParams.
_DEPTH_ONE = {"kernel": 1, "stride": 1, "padding": 0, "dilation": 1}


def volume_shape(shape) -> tuple[int, ...]:
    """(N, C, H, W) -> (N, C, 1, H, W); (N, C, D, H, W) unchanged."""
    return tuple(shape[:2]) + (1,) * (5 - len(shape)) + tuple(shape[2:])


def in_depth(values, field: str) -> tuple[int, ...]:
    """The per-axis values of geometry field `field` ("kernel", "stride", "padding" or "dilation") with
    three entries, depth first."""
    return (_DEPTH_ONE[field],) * (3 - len(values)) + tuple(int(n) for n in values)


def volume_params(p):
    """A PoolParams or ConvParams with three entries (depth, height, width) per axis field."""
    return p._replace(**{f: in_depth(getattr(p, f), f) for f in _DEPTH_ONE if f in p._fields})


def pool_window(kernel, stride, padding, dilation=None) -> tuple[int, ...]:
    """A pooling kernel's per-axis arguments, each field depth first: kernel, stride and padding, then
    dilation where given (average pooling has none)."""
    fields = (kernel, "kernel"), (stride, "stride"), (padding, "padding"), (dilation, "dilation")
    return tuple(n for values, field in fields if values is not None for n in in_depth(values, field))

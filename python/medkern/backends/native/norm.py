"""Batch normalisation on medkern's compiled CPU kernels: optional entries (backends/CONTRACT.md); the ops
compose torch's where a backend has none."""
from __future__ import annotations

from ..._native import require_cpu
from ._interop import dl

OPTIONAL = {"cpu": frozenset({"batch_norm_statistics", "batch_norm_apply", "batch_norm_backward"})}


def batch_norm_statistics(x, mean, var):
    require_cpu().batch_norm_statistics(dl(x), dl(mean), dl(var))


def batch_norm_apply(x, scale, shift, out, activation, negative_slope):
    require_cpu().batch_norm_apply(dl(x), dl(scale), dl(shift), dl(out), activation, negative_slope)


def batch_norm_backward(grad_out, x, out, mean, invstd, weight, grad_x, grad_weight, grad_bias, activation,
                        negative_slope):
    opt = lambda t: None if t is None else dl(t)  # noqa: E731
    require_cpu().batch_norm_backward(dl(grad_out), dl(x), opt(out), dl(mean), dl(invstd), opt(weight), opt(grad_x),
                                      opt(grad_weight), opt(grad_bias), activation, negative_slope)

"""Which CPU algorithm runs a convolution, asked of the planner the kernels use (csrc/cpu/conv_plan.h lists
the paths and why each is chosen).

``conv_plan`` names the path a call takes, ``conv_paths`` every path that applies to it, and
``force_conv_path`` (or the ``MEDKERN_CONV_PATH`` environment variable) makes every convolution of the
process take a given path where that direction has it, raising ``ValueError`` where the path does not apply.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from .. import _native
from ._conv_geometry import conv_geometry

__all__ = ["conv_plan", "conv_paths", "force_conv_path", "forced_conv_path"]

_DIRECTIONS = ("forward", "grad_input", "grad_weight")


def _planner_args(input_shape, weight_shape, stride, padding, dilation, groups, direction, dtype):
    """The planner's N-d arguments: every shape as depth, height, width (1-d and 2-d calls padded with unit
    extents, as their kernels run them)."""
    weight_shape, input_shape = tuple(weight_shape), tuple(input_shape)
    d = len(weight_shape) - 2
    if d not in (1, 2, 3):
        raise ValueError(f"weight_shape: expected 3, 4 or 5 sizes (a 1-d, 2-d or 3-d kernel), got {weight_shape}")
    if len(input_shape) == d + 1:
        input_shape = (1, *input_shape)
    if len(input_shape) != d + 2:
        raise ValueError(f"input_shape: expected {d + 2} sizes (or {d + 1} unbatched) for a {d}-d kernel, "
                         f"got {input_shape}")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected one of {_DIRECTIONS}, got {direction!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    g = conv_geometry(input_shape, weight_shape, None, stride, padding, dilation, groups)
    unit = (1,) * (3 - d)
    return (direction, (*input_shape[:2], *unit, *input_shape[2:]), (*weight_shape[:2], *unit, *weight_shape[2:]),
            (*unit, *g.output), (*unit, *g.stride), (*((0,) * (3 - d)), *g.padding[:d]), (*unit, *g.dilation),
            g.groups, dtype == torch.float64)


def conv_plan(input_shape: Sequence[int], weight_shape: Sequence[int], *, stride=1, padding=0, dilation=1,
              groups: int = 1, direction: str = "forward", dtype: torch.dtype = torch.float32,
              weights_packed: bool = False) -> str:
    """The name of the CPU path a convolution takes, e.g. ``"winograd_f2x3"``, or ``"as_forward>gemm"`` for
    a grad-input run as a forward convolution by the forward path after ``>`` (``phases>F1+F2``: the
    stride phases' forward paths). Arguments as ``torch.nn.functional.conv1d/2d/3d`` take them, shapes only;
    ``direction`` is ``"forward"``, ``"grad_input"`` or ``"grad_weight"``. ``weights_packed``: the call
    brings its weights packed ahead, as a compiled network's do (``medkern.optimize``), which the paths
    ``direct``, ``gemm_weight_panels`` and ``winograd_f2x3_panels`` need to be chosen. A forced path is reported as it
    will run (and raises ``ValueError`` here if it does not apply)."""
    args = _planner_args(input_shape, weight_shape, stride, padding, dilation, groups, direction, dtype)
    return _native.require_cpu().conv_plan(*args, bool(weights_packed))


def conv_paths(input_shape: Sequence[int], weight_shape: Sequence[int], *, stride=1, padding=0, dilation=1,
               groups: int = 1, direction: str = "forward", dtype: torch.dtype = torch.float32) -> list[str]:
    """Every path that computes this convolution correctly, in the planner's order of preference: the
    values ``force_conv_path`` accepts for it."""
    args = _planner_args(input_shape, weight_shape, stride, padding, dilation, groups, direction, dtype)
    return _native.require_cpu().conv_plans(*args)


def forced_conv_path() -> str:
    """The path forced now ('' when the planner chooses)."""
    return _native.require_cpu().conv_forced_path()


@contextlib.contextmanager
def force_conv_path(path: str) -> Iterator[None]:
    """Within the block, every CPU convolution in the process takes ``path`` in the directions that have a
    path of that name (``"grid"``: all three; ``"as_forward>gemm"``: the grad-input, run by the GEMM
    forward); a convolution it does not apply to raises ``ValueError``. The previous setting (from
    ``MEDKERN_CONV_PATH``, or an enclosing block) comes back on exit."""
    C = _native.require_cpu()
    before = C.conv_forced_path()
    C.conv_force_path(path)
    try:
        yield
    finally:
        C.conv_force_path(before)

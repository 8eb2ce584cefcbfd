"""The convolution geometry over 1, 2 or 3 spatial axes: validation of a call's shapes and arguments and its
output extents. One rule for every rank (a 1-d convolution is a 2-d one of height 1, a 2-d one a 3-d one
of depth 1), shared by the ops and the planner's ``conv_plan``, as ``ConvShape`` (csrc/common/conv_params.h)
is shared by the kernels."""
from __future__ import annotations

from typing import NamedTuple

from .._geometry import conv_out_size
from . import _validate as v


class ConvGeometry(NamedTuple):
    """A validated call: per spatial axis, outermost first."""
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # leading padding of every axis, then trailing (2-d: top, left, bottom, right)
    dilation: tuple[int, ...]
    groups: int
    output: tuple[int, ...]  # output extents


def conv_geometry(input_shape, weight_shape, bias_shape, stride, padding, dilation, groups) -> ConvGeometry:
    """Validates a batched call (input (N, C, *spatial), weight (K, C/groups, *kernel)) with torch's
    rules, raising ValueError/TypeError naming the argument."""
    d = len(weight_shape) - 2
    K, Cg, *kernel = weight_shape
    C, *size = input_shape[1:]
    stride = v.int_tuple(stride, "stride", d, minimum=1)
    dilation = v.int_tuple(dilation, "dilation", d, minimum=1)
    groups = v.integer(groups, "groups", minimum=1)
    if isinstance(padding, str):
        if padding == "valid":
            lead = trail = (0,) * d
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding: 'same' is not supported for strided convolutions (stride must be 1)")
            total = [dl * (k - 1) for dl, k in zip(dilation, kernel)]
            lead = tuple(t // 2 for t in total)
            trail = tuple(t - t // 2 for t in total)
        else:
            raise ValueError(f"padding: expected an int, a tuple of {d}, 'same' or 'valid', got {padding!r}")
    else:
        lead = trail = v.int_tuple(padding, "padding", d, minimum=0)
    if min(K, Cg, *kernel) < 1:
        raise ValueError(f"weight: every size must be positive, got shape {tuple(weight_shape)}")
    if min(C, *size) < 1:
        raise ValueError(f"input: channel and spatial sizes must be positive, got shape {tuple(input_shape)}")
    if C % groups or K % groups:
        raise ValueError(f"groups: {groups} must divide both the input channels ({C}) and the output channels ({K})")
    if Cg * groups != C:
        raise ValueError(f"weight: expected {C // groups} input channels per group (input has {C} channels in "
                         f"{groups} groups), got weight of shape {tuple(weight_shape)}")
    if bias_shape is not None and tuple(bias_shape) != (K,):
        raise ValueError(f"bias: expected shape ({K},), got {tuple(bias_shape)}")
    output = tuple(conv_out_size(n, k, s, a + b, dl)
                   for n, k, s, a, b, dl in zip(size, kernel, stride, lead, trail, dilation))
    if min(output) < 1:
        reach = tuple(dl * (k - 1) + 1 for dl, k in zip(dilation, kernel))
        raise ValueError(f"input: spatial size {tuple(size)} plus padding is smaller than the dilated kernel {reach}")
    return ConvGeometry(stride, lead + trail, dilation, groups, output)

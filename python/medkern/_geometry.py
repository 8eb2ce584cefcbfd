"""Geometry shared by every layer of the engine: the normalised parameters of one convolution call.

The ops layer builds a :class:`ConvParams` after validating the user's arguments; backends receive it
unchanged. Padding here is the *leading* padding only: the trailing padding is implied by the output
size (the shape of the output tensor), which is how ``padding='same'`` with an even kernel pads one
more on the bottom/right, exactly as torch does.
"""
from __future__ import annotations

from typing import NamedTuple


# The forward epilogue's activation codes, shared with the kernels (csrc/common/conv_params.h).
ACTIVATIONS = {"none": 0, "relu": 1, "leaky_relu": 2}


class ConvParams(NamedTuple):
    """Per spatial axis, outermost first: (height, width) for a 2-d call, (depth, height, width) for 3-d."""
    stride: tuple[int, ...]
    padding: tuple[int, ...]  # leading (top, left) / (front, top, left)
    dilation: tuple[int, ...]
    groups: int
    activation: int = 0  # forward only: ACTIVATIONS code applied to conv + bias as it is stored
    negative_slope: float = 0.0  # leaky_relu's, >= 0


def conv_out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


class PoolParams(NamedTuple):
    """Per spatial axis, outermost first: 2 entries for 2-d pooling, 3 for 3-d."""
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]  # all 1 for average pooling


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output size: with ceil_mode the last window may hang over the end, but must start
    inside the input or its leading padding."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out

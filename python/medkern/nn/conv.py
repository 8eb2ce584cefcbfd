"""Drop-in convolution modules: torch's classes with the forward routed to medkern's ops, so the
constructor, parameter names, initialisation and state_dict are torch's own."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair, _single

from .. import ops
from .batchnorm import folded_weights


class Conv2d(torch.nn.Conv2d):
    """``torch.nn.Conv2d`` computed by medkern (any backend, any padding_mode).

    ``fused_activation`` (None, ``'relu'`` or ``'leaky_relu'`` with ``negative_slope``) is applied inside
    the convolution's output pass; ``medkern.patch`` sets it when it fuses a following ReLU/LeakyReLU.
    Class-level defaults, so a torch ``Conv2d`` swapped in by class change has them too. Where ``patch``
    folded the following BatchNorm into it (``medkern.nn.batchnorm``), that layer is kept in ``__dict__``
    (not as a submodule: the module tree and state_dict stay torch's)."""

    fused_activation: str | None = None
    negative_slope: float = 0.0

    def _conv_forward(self, input, weight, bias):
        act = (self.fused_activation, self.negative_slope)
        bn = self.__dict__.get("folded_batchnorm")
        if bn is not None and bn.statistics_fixed():
            weight, bias = folded_weights(self, bn, weight, bias)
            act = (bn.activation, bn.negative_slope)
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return ops.conv2d(input, weight, bias, self.stride, _pair(0), self.dilation, self.groups, *act)
        return ops.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups, *act)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.fused_activation == "relu":
            return s + ", activation=relu"
        if self.fused_activation == "leaky_relu":
            return s + f", activation=leaky_relu({self.negative_slope})"
        return s


class Conv1d(torch.nn.Conv1d):
    """``torch.nn.Conv1d`` computed by medkern (any backend, any padding_mode); like ``Conv2d``, with the
    BatchNorm1d after it where ``patch`` folded it."""

    def _conv_forward(self, input, weight, bias):
        act = (None, 0.0)
        bn = self.__dict__.get("folded_batchnorm")
        if bn is not None and bn.statistics_fixed():
            weight, bias = folded_weights(self, bn, weight, bias)
            act = (bn.activation, bn.negative_slope)
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return ops.conv1d(input, weight, bias, self.stride, _single(0), self.dilation, self.groups, *act)
        return ops.conv1d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups, *act)


class ConvTranspose2d(torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` computed by medkern, ``output_size`` included."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":
            raise ValueError("Only 'zeros' padding mode is supported for ConvTranspose2d")  # as torch
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return ops.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                    self.groups, self.dilation)


SWAPS = {torch.nn.Conv1d: Conv1d, torch.nn.Conv2d: Conv2d, torch.nn.ConvTranspose2d: ConvTranspose2d}

"""Drop-in convolution modules: torch's classes with the forward routed to medkern's ops, so the
constructor, parameter names, initialisation and state_dict are torch's own."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops
from .batchnorm import folded_weights


class _MedkernConv:
    """The forward of medkern's convolution modules, one for every rank (``_op`` the functional op).

    ``fused_activation`` (None, ``'relu'`` or ``'leaky_relu'`` with ``negative_slope``) is applied inside
    the convolution's output pass; ``medkern.patch`` sets it when it fuses a following ReLU/LeakyReLU.
    Class-level defaults, so a torch convolution swapped in by class change has them too. Where ``patch``
    folded the following BatchNorm into it (``medkern.nn.batchnorm``), that layer is kept in ``__dict__``
    (not as a submodule: the module tree and state_dict stay torch's)."""

    fused_activation: str | None = None
    negative_slope: float = 0.0

    def _conv_forward(self, input, weight, bias):
        act = (self.fused_activation, self.negative_slope)
        bn = self.__dict__.get("folded_batchnorm")
        if bn is not None and bn.statistics_fixed():
            weight, bias = folded_weights(self, bn, weight, bias)
            act = (bn.fused_activation, bn.negative_slope)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return self._op(input, weight, bias, self.stride, padding, self.dilation, self.groups, *act)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.fused_activation == "relu":
            return s + ", activation=relu"
        if self.fused_activation == "leaky_relu":
            return s + f", activation=leaky_relu({self.negative_slope})"
        return s


class Conv1d(_MedkernConv, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` computed by medkern (any backend, any padding_mode)."""
    _op = staticmethod(ops.conv1d)


class Conv2d(_MedkernConv, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` computed by medkern (any backend, any padding_mode)."""
    _op = staticmethod(ops.conv2d)


class Conv3d(_MedkernConv, torch.nn.Conv3d):
    """``torch.nn.Conv3d`` computed by medkern (any backend, any padding_mode)."""
    _op = staticmethod(ops.conv3d)


class _MedkernConvTranspose:
    """The forward of medkern's transposed convolutions, ``output_size`` included (``_op``, ``_rank``)."""

    def forward(self, input, output_size=None):
        if self.padding_mode != "zeros":  # as torch
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size,
                                              self._rank, self.dilation)
        return self._op(input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups,
                        self.dilation)


class ConvTranspose2d(_MedkernConvTranspose, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` computed by medkern."""
    _op, _rank = staticmethod(ops.conv_transpose2d), 2


class ConvTranspose3d(_MedkernConvTranspose, torch.nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` computed by medkern."""
    _op, _rank = staticmethod(ops.conv_transpose3d), 3


SWAPS = {torch.nn.Conv1d: Conv1d, torch.nn.Conv2d: Conv2d, torch.nn.Conv3d: Conv3d,
         torch.nn.ConvTranspose2d: ConvTranspose2d, torch.nn.ConvTranspose3d: ConvTranspose3d}

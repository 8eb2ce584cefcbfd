"""Drop-in convolution modules: torch's classes with the forward routed to medkern's ops, so the
constructor, parameter names, initialisation and state_dict are torch's own."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _native, backends, ops
from .batchnorm import folded_weights

_KERNEL_DTYPES = (torch.float32, torch.float64)


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
            padding = (0,) * self._rank
        if self._runs_packed(input, weight, padding):
            return self._inference_node(padding, act)(input, weight, bias, None, None, None, None, None)
        return self._op(input, weight, bias, self.stride, padding, self.dilation, self.groups, *act)

    def _runs_packed(self, input, weight, padding) -> bool:
        """Inference (no gradient wanted) of a batch on the native CPU kernels: the call runs as a compiled graph's
        convolution node does, with its weights packed once for the path the planner takes (a small map at batch
        1: the direct kernel) and packed again only when a weight changes."""
        # (Under Dynamo the op is traced instead, and the backend's passes make the node: asked first, as Dynamo
        # cannot trace the backend's context variable.)
        return (not torch.compiler.is_compiling() and not torch.is_grad_enabled() and input.is_cpu and
                input.dim() == self._rank + 2 and input.dtype in _KERNEL_DTYPES and weight.dtype == input.dtype and
                not isinstance(padding, str) and _native._C is not None and backends.current() == backends.DEFAULT)

    def _inference_node(self, padding, act):
        """This layer's FusedConv node for its geometry and activation (made on first use, and again if they
        change); it keeps the packed weights."""
        from ..compile.fused_conv import ConvEpilogue, FusedConv

        key = (tuple(padding), act)
        held = self.__dict__.get("_packed_inference")
        if held is None or held[0] != key:
            name, slope = act
            epilogue = ConvEpilogue(activation=name or "none", negative_slope=slope if name == "leaky_relu" else 0.0)
            held = self.__dict__["_packed_inference"] = (
                key, FusedConv(self.stride, padding, self.dilation, self.groups, epilogue))
        return held[1]

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.fused_activation == "relu":
            return s + ", activation=relu"
        if self.fused_activation == "leaky_relu":
            return s + f", activation=leaky_relu({self.negative_slope})"
        return s


class Conv1d(_MedkernConv, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` computed by medkern (any backend, any padding_mode)."""
    _op, _rank = staticmethod(ops.conv1d), 1


class Conv2d(_MedkernConv, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` computed by medkern (any backend, any padding_mode)."""
    _op, _rank = staticmethod(ops.conv2d), 2


class Conv3d(_MedkernConv, torch.nn.Conv3d):
    """``torch.nn.Conv3d`` computed by medkern (any backend, any padding_mode)."""
    _op, _rank = staticmethod(ops.conv3d), 3


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

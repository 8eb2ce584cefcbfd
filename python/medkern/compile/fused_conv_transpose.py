"""The transposed convolution node of a compiled inference graph: ``act(conv_transpose(x, W') + b')``, with the
BatchNorm after it folded into ``W'``, ``b'``, run as one forward convolution per stride phase.

A transposed convolution of stride s writes each output position from the kernel taps of one phase: along an
axis, the outputs o with (o + padding) mod s = phi read only the taps phi, phi + s, phi + 2s, ... So the outputs of
one phase are a stride-1 convolution of x with that sub-kernel, flipped and with input and output channels
swapped; for DCGAN's 4x4 stride-2 layers, four 2x2 convolutions with no product wasted on the zeros that a
transposed convolution run as one strided scatter (or as a convolution of the zero-stuffed input) multiplies.
Each phase runs on the forward kernels with its sub-kernel packed ahead; its outputs are then interleaved into
the result."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.dlpack import to_dlpack as dl

from .._geometry import ACTIVATIONS
from .._native import require_cpu
from ..nn.batchnorm import fold_batchnorm
from ..ops import _alloc
from .fused_conv import PreparedWeights, activate, packed_weight, planned_layout


@dataclass(frozen=True)
class AxisPhase:
    """The outputs of one phase along one axis: ``count`` of them, the first at ``first``, ``stride`` apart, read
    through ``taps`` kernel taps (phase, phase + stride, ...) from the input with ``pad`` leading zeros."""
    taps: int
    first: int
    count: int
    pad: int


def axis_phases(size: int, out_size: int, kernel: int, stride: int, padding: int) -> list[AxisPhase] | None:
    """The phases of one axis, or None where a phase would need negative padding (it reads past the input's start:
    padding larger than the kernel's reach), which the forward kernels do not take."""
    phases = []
    for phi in range(stride):
        taps = len(range(phi, kernel, stride))
        t0 = -((phi - padding) // stride)  # the first t with s*t + phi - padding >= 0
        count = (out_size - 1 + padding - phi) // stride - t0 + 1
        pad = taps - 1 - t0
        if count > 0 and taps > 0 and pad < 0:
            return None
        phases.append(AxisPhase(taps, stride * t0 + phi - padding, max(count, 0), pad))
    return phases


def output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def runs_on_phases(x_shape, w_shape, stride, padding, output_padding, double: bool) -> bool:
    """Whether every phase of this transposed convolution (dilation 1, weight: Cin, Cout, R, S) runs on the forward
    kernels, each on a path that reads its sub-kernel packed ahead (small maps at small batch, where those paths
    win). The phases of larger calls would run on the unpacked GEMMs, which measured slower than torch's own
    transposed convolution there (DCGAN's 128 -> 64 channels at 7x7, batch 32: 0.77x)."""
    axes = [axis_phases(n, output_size(n, k, s, p, op), k, s, p) for n, k, s, p, op in
            zip(x_shape[2:], w_shape[2:], stride, padding, output_padding)]
    if any(a is None for a in axes):
        return False
    rows, cols = axes
    return all(planned_layout(x_shape, (w_shape[1], w_shape[0], r.taps, c.taps), (r.count, c.count), (1, 1),
                              (r.pad, c.pad), (1, 1), 1, double)
               for r, c in product(rows, cols) if r.count and c.count and r.taps and c.taps)


class _Phase:
    """One phase's forward convolution: where its outputs go, and its sub-kernel (Cout, Cin, taps) as the planner's
    path for it reads it (packed ahead where that path takes packed weights); no sub-kernel where no tap reaches
    the phase."""
    __slots__ = ("rows", "cols", "weight", "capsule", "layout", "packed", "packed_capsule")

    def __init__(self, rows: AxisPhase, cols: AxisPhase, weight: Tensor | None, x_shape):
        self.rows, self.cols, self.weight = rows, cols, weight
        self.capsule = self.packed = self.packed_capsule = None
        self.layout = ""
        if weight is not None:
            self.capsule = dl(weight)
            self.layout = planned_layout(x_shape, weight.shape, (rows.count, cols.count), (1, 1),
                                         (rows.pad, cols.pad), (1, 1), 1, weight.dtype == torch.float64)
            if self.layout:
                self.packed, self.packed_capsule = packed_weight(weight, 1, self.layout)


class FusedConvTranspose(PreparedWeights):
    """Callable graph node: ``(x, weight, bias, bn_weight, bn_bias, bn_mean, bn_var) -> y`` for a 2-d transposed
    convolution of one group and dilation 1 (x: N, Cin, H, W; weight: Cin, Cout, R, S); bias and the BatchNorm
    tensors may be None. ``activation``: "none", "relu" or "leaky_relu" (slope >= 0), after bias and BatchNorm."""

    def __init__(self, stride, padding, output_padding, eps: float | None, activation: str = "none",
                 negative_slope: float = 0.0):
        super().__init__()
        self.stride, self.padding, self.output_padding = tuple(stride), tuple(padding), tuple(output_padding)
        self.eps, self.activation, self.negative_slope = eps, activation, float(negative_slope)
        self._code = ACTIVATIONS[activation]
        self.__name__ = "medkern_fused_conv_transpose"  # what an FX graph's code calls the node

    def __repr__(self) -> str:
        return (f"FusedConvTranspose(stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, eps={self.eps}, {self.activation})")

    def out_shape(self, x_shape, w_shape) -> tuple:
        return (x_shape[0], w_shape[1], *(output_size(n, k, s, p, op) for n, k, s, p, op in
                                          zip(x_shape[2:], w_shape[2:], self.stride, self.padding,
                                              self.output_padding)))

    def _prepare(self, weight, bias, bn_weight, bn_bias, mean, var):
        """The phases' sub-kernels with the BatchNorm folded in (in float64), and the folded bias."""
        if self.eps is not None:
            w, b = fold_batchnorm(weight.transpose(0, 1), bias, bn_weight, bn_bias, mean, var, self.eps, torch.float64)
            weight, bias = w.transpose(0, 1).to(weight.dtype), b.to(weight.dtype)
        bias = torch.zeros(weight.shape[1], dtype=weight.dtype) if bias is None else bias.contiguous()
        return weight.contiguous(), bias, {}

    def _phases(self, prepared, x_shape) -> list[_Phase]:
        """The phases of calls with this input shape, made once per preparation."""
        weight, _bias, by_shape = prepared
        phases = by_shape.get(x_shape)
        if phases is None:
            out = self.out_shape(x_shape, weight.shape)[2:]
            rows, cols = (axis_phases(n, o, k, s, p) for n, o, k, s, p in
                          zip(x_shape[2:], out, weight.shape[2:], self.stride, self.padding))
            sh, sw = self.stride
            phases = []
            with torch.inference_mode(False), torch.no_grad():
                for (ph, r), (pw, c) in product(enumerate(rows), enumerate(cols)):
                    if r.count and c.count:  # taps phi, phi + s, ..., flipped; input and output channels swapped
                        sub = weight[:, :, ph::sh, pw::sw].flip(2, 3).transpose(0, 1).contiguous() \
                            if r.taps and c.taps else None
                        phases.append(_Phase(r, c, sub, x_shape))
            by_shape[x_shape] = phases
        return phases

    def __call__(self, x: Tensor, weight: Tensor, bias, bn_weight, bn_bias, mean, var) -> Tensor:
        prepared = self.prepared(weight, bias, bn_weight, bn_bias, mean, var)
        if not x.is_cpu:
            return self._off_cpu(x, prepared)
        x = x.contiguous()
        folded_bias = prepared[1]
        y = _alloc.empty(self.out_shape(x.shape, weight.shape), x)
        C, (sh, sw) = require_cpu(), self.stride
        for phase in self._phases(prepared, tuple(x.shape)):
            r, c = phase.rows, phase.cols
            dest = y[:, :, r.first::sh, c.first::sw]  # (r.count, c.count) positions
            if phase.weight is None:  # no tap reaches these outputs: the bias alone
                bias_only = folded_bias.view(1, -1, 1, 1).expand_as(dest)
                dest.copy_(activate(bias_only, self.activation, self.negative_slope))
                continue
            out = _alloc.empty((x.shape[0], y.shape[1], r.count, c.count), x)
            C.conv2d_forward(dl(x), phase.capsule, dl(folded_bias), dl(out), 1, 1, r.pad, c.pad, 1, 1, 1, 0,
                             self._code, self.negative_slope, None, phase.packed_capsule, phase.layout)
            dest.copy_(out)
        return y

    def _off_cpu(self, x: Tensor, prepared) -> Tensor:
        """The CUDA module has no packed phases: torch's transposed convolution with the folded weights."""
        weight, bias, _ = prepared
        y = F.conv_transpose2d(x, weight.to(x.device), bias.to(x.device), self.stride, self.padding,
                               self.output_padding)
        return activate(y, self.activation, self.negative_slope)

"""The convolution node of a compiled inference graph: ``act(conv(x, W') + b' + residual)`` in one kernel call,
with ``W'``, ``b'`` the convolution's weight and bias with the BatchNorm after it folded in (in float64), and
``W'`` also packed in the layout the CPU kernels stream. Both are made on the first call and made again when
any tensor they come from changes (its version counter, or a new tensor in its place), so an optimiser step
or a loaded state_dict after compiling is never answered from stale weights."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.dlpack import to_dlpack as dl

from .._geometry import ACTIVATIONS, conv_out_size
from .._native import require_cpu
from ..nn.batchnorm import fold_batchnorm
from ..ops import _alloc


# The CPU forward paths that read weights packed ahead of the call.
PACKED_LAYOUTS = ("direct", "gemm_weight_panels", "winograd_f2x3_panels", "winograd3d_f2x3")


@dataclass(frozen=True)
class ConvEpilogue:
    """What a fused convolution node computes besides the convolution."""
    eps: Optional[float] = None  # the folded BatchNorm's eps; None: no BatchNorm
    activation: str = "none"     # "none", "relu" or "leaky_relu" (slope >= 0), after bias and residual
    negative_slope: float = 0.0
    # A BatchNorm (and ReLU) before the convolution, with an activation between them so that it cannot be
    # folded: applied to the input as the kernel reads it. None: no such BatchNorm.
    input_eps: Optional[float] = None
    input_relu: bool = False


class _Prepared:
    """A node's weights made ready for the kernels: the convolution's weight and bias with the BatchNorm after it
    folded in, the input BatchNorm as a scale and shift, each with its DLPack capsule made once (the kernels read
    capsules without consuming them); ``packings``: layout -> (packed weight, its capsule), made on first need."""
    __slots__ = ("weight", "bias", "scale", "shift", "capsules", "packings")

    def __init__(self, weight: Tensor, bias, scale, shift):
        self.weight, self.bias, self.scale, self.shift = weight, bias, scale, shift
        self.capsules = tuple(None if t is None else dl(t) for t in (weight, bias, scale, shift))
        self.packings = {}


class PreparedWeights:
    """What a graph node makes from the model's tensors once (folded, packed weights), made again when any of them
    changes (its version counter, or a new tensor in its place). Subclasses define ``_prepare(*tensors)``."""

    def __init__(self):
        self._key = None
        self._prepared = None
        self._lock = threading.Lock()

    def prepared(self, *tensors):
        """``_prepare(*tensors)``, remade when an input tensor changed."""
        key = self._key
        if key is not None and unchanged(tensors, key):
            return self._prepared
        with self._lock:  # concurrent first calls (a server's threads) prepare once, and never see half of it
            if self._key is None or not unchanged(tensors, self._key):
                with torch.inference_mode(False), torch.no_grad():
                    self._prepared = self._prepare(*(None if t is None else t.detach() for t in tensors))
                self._key = snapshot(tensors)
            return self._prepared

    def _prepare(self, *tensors):
        raise NotImplementedError


def packed_weight(weight: Tensor, groups: int, layout: str):
    """(weight packed for the CPU forward path ``layout``, its DLPack capsule)."""
    C = require_cpu()
    with torch.inference_mode(False), torch.no_grad():
        packed = torch.empty(C.conv2d_packed_weight_numel(dl(weight), groups, layout), dtype=weight.dtype)
        C.conv2d_pack_weight(dl(weight), dl(packed), groups, layout)
    return packed, dl(packed)


def planned_layout(x_shape, w_shape, out, stride, padding, dilation, groups: int, double: bool) -> str:
    """The packed layout the planner's forward path reads for this convolution (weights packed ahead), or "";
    padding is leading, the output extents ``out`` given."""
    lift = 3 - len(out)  # the planner takes N-d geometry: a plane is a volume of depth 1
    path = require_cpu().conv_plan("forward", (*x_shape[:2], *(1,) * lift, *x_shape[2:]),
                                   (*w_shape[:2], *(1,) * lift, *w_shape[2:]), (*(1,) * lift, *out),
                                   (*(1,) * lift, *stride), (*(0,) * lift, *padding), (*(1,) * lift, *dilation),
                                   groups, double, True)
    return path if path in PACKED_LAYOUTS else ""


class FusedConv(PreparedWeights):
    """Callable graph node: ``(x, weight, bias, bn_weight, bn_bias, bn_mean, bn_var, residual, in_weight, in_bias,
    in_mean, in_var) -> y`` for a 1-d, 2-d or 3-d convolution (x of rank 3, 4 or 5: NC[[D]H]W); any of bias, the
    BatchNorm tensors (after: bn_*, before: in_*) and residual may be None. A call costs the kernel plus a few
    Python operations: the weights' version check, one allocation and one binding call with positional
    arguments (what a shape implies is remembered per input shape)."""

    def __init__(self, stride, padding, dilation, groups: int, epilogue: ConvEpilogue):
        super().__init__()
        rank = len(stride)
        # 1-d runs as 2-d over a height-1 image (views, no copies); 3-d on the volume kernels.
        lift = max(0, 2 - rank)
        self.geometry = ((1,) * lift + tuple(stride), (0,) * lift + tuple(padding), (1,) * lift + tuple(dilation),
                         groups)
        self.rank = rank
        self.epilogue = epilogue
        stride, padding, dilation, groups = self.geometry
        # The kernel call's arguments after the tensors, fixed at compile time.
        self._kernel_args = (*stride, *padding, *dilation, groups, 0, ACTIVATIONS[epilogue.activation],
                             epilogue.negative_slope)
        self._shapes = {}  # (input shape, dtype) -> (output shape, the layout its planned path reads or "")
        self.__name__ = "medkern_fused_conv"  # what an FX graph's code calls the node (a target needs a name)

    def __repr__(self) -> str:
        return f"FusedConv(geometry={self.geometry}, {self.epilogue})"

    def _prepare(self, weight, bias, bn_weight, bn_bias, mean, var, in_weight, in_bias, in_mean, in_var) -> _Prepared:
        if self.epilogue.eps is not None:
            w, b = fold_batchnorm(weight, bias, bn_weight, bn_bias, mean, var, self.epilogue.eps, torch.float64)
            weight, bias = w.to(weight.dtype), b.to(weight.dtype)
        scale = shift = None
        if self.epilogue.input_eps is not None:
            ones = torch.ones(in_mean.shape, dtype=torch.float64, device=in_mean.device)
            scale, shift = fold_batchnorm(ones, None, in_weight, in_bias, in_mean, in_var, self.epilogue.input_eps,
                                          torch.float64)
            scale, shift = scale.to(weight.dtype).contiguous(), shift.to(weight.dtype).contiguous()
        weight = weight.contiguous()
        if self.rank == 1:
            weight = weight.unsqueeze(2)
        return _Prepared(weight, None if bias is None else bias.contiguous(), scale, shift)

    def packed(self, prepared: _Prepared, layout: str):
        """The capsule of the prepared weight packed for ``layout``, made once per preparation."""
        packing = prepared.packings.get(layout)
        if packing is None:
            packing = prepared.packings[layout] = packed_weight(prepared.weight, self.geometry[3], layout)
        return packing[1]

    def _shape_facts(self, x, w):
        """(output shape, layout) for this input: the packed layout the planner's path reads, or ""."""
        stride, padding, dilation, groups = self.geometry
        out = tuple(conv_out_size(n, k, s, 2 * p, d) for n, k, s, p, d in
                    zip(x.shape[2:], w.shape[2:], stride, padding, dilation))
        layout = planned_layout(x.shape, w.shape, out, stride, padding, dilation, groups, x.dtype == torch.float64)
        return (x.shape[0], w.shape[0], *out), layout

    def __call__(self, x: Tensor, weight: Tensor, bias, bn_weight, bn_bias, mean, var, residual,
                 in_weight=None, in_bias=None, in_mean=None, in_var=None) -> Tensor:
        p = self.prepared(weight, bias, bn_weight, bn_bias, mean, var, in_weight, in_bias, in_mean, in_var)
        if self.rank == 1:
            x = x.unsqueeze(2)
            residual = None if residual is None else residual.unsqueeze(2)
        x = x.contiguous()
        residual = None if residual is None else residual.contiguous()
        y = self._run(x, p, residual) if x.is_cpu else self._run_off_cpu(x, p, residual)
        return y.squeeze(2) if self.rank == 1 else y

    def _run(self, x, p: _Prepared, residual):
        facts = self._shapes.get((x.shape, x.dtype))
        if facts is None:
            facts = self._shapes[(x.shape, x.dtype)] = self._shape_facts(x, p.weight)
        out_shape, layout = facts
        y = _alloc.empty(out_shape, x)
        if not y.numel():
            return y
        w, b, scale, shift = p.capsules
        r = None if residual is None else dl(residual)
        packed = self.packed(p, layout) if layout else None
        if self.rank == 3:
            require_cpu().conv3d_forward(dl(x), w, b, dl(y), *self._kernel_args, r, scale, shift,
                                         self.epilogue.input_relu, packed, layout)
        else:
            require_cpu().conv2d_forward(dl(x), w, b, dl(y), *self._kernel_args, r, packed, layout, scale, shift,
                                         self.epilogue.input_relu)
        return y

    def _run_off_cpu(self, x, p: _Prepared, residual):
        """The CUDA module has no fused prologue, residual or packed weights: its convolution, and torch around it."""
        from ..ops import conv2d, conv3d
        stride, padding, dilation, groups = self.geometry
        if p.scale is not None:
            channel = (-1, *(1,) * (x.dim() - 2))
            x = torch.addcmul(p.shift.view(channel), x, p.scale.view(channel))
            x = F.relu(x) if self.epilogue.input_relu else x
        y = (conv3d if self.rank == 3 else conv2d)(x, p.weight, p.bias, stride, padding, dilation, groups)
        y = y if residual is None else y + residual
        return activate(y, self.epilogue.activation, self.epilogue.negative_slope)


def activate(y: Tensor, activation: str, negative_slope: float) -> Tensor:
    """A fused node's activation in torch ("none", "relu" or "leaky_relu"), where its kernel does not apply it."""
    if activation == "relu":
        return F.relu(y)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope)
    return y


def version_of(t: Tensor) -> int:
    """t's version counter; -1 for an inference tensor, which has none (made under inference_mode, it can only be
    changed in place there, where torch itself does not track it)."""
    return -1 if t.is_inference() else t._version


def snapshot(tensors) -> tuple:
    """What ``unchanged`` compares with: the tensors themselves (not their ids, which a new tensor may reuse) and
    their version counters."""
    return tensors, tuple(None if t is None else version_of(t) for t in tensors)


def unchanged(tensors, key) -> bool:
    """Whether ``tensors`` are the very tensors of ``key`` (a ``snapshot``), none changed in place since."""
    before, versions = key
    for t, u, version in zip(tensors, before, versions):
        if t is not u or (t is not None and version_of(t) != version):
            return False
    return True

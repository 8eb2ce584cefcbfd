"""BatchNorm folded into the convolution before it, for inference: ``medkern.patch`` pairs a ``Conv1d/2d/3d``
with the ``BatchNorm1d/2d/3d`` after it, and the ReLU/LeakyReLU after that, inside an ``nn.Sequential``. While
the statistics
are fixed (eval mode with running statistics) the convolution computes ``act(bn(conv(x)))`` in one pass, with
its weights and bias scaled by the normalisation, and the BatchNorm passes its input through; while they are
not (training, or no running statistics) both layers compute what they did before the fusion. Weights are
folded once and folded again when any of the tensors involved changes (their version counters), so an
optimiser step or a loaded state_dict is never answered from stale weights."""
from __future__ import annotations

import torch

from .norm import BatchNorm1d, BatchNorm2d, BatchNorm3d


class _Folded:
    """A BatchNorm whose convolution applies it while its statistics are fixed (see the module text). Set in
    place by class change: parameters, buffers, hooks and state_dict keys stay torch's.

    ``fused_activation`` / ``negative_slope``: the ReLU or LeakyReLU fused after it, applied by the convolution
    while the statistics are fixed and by this layer's own pass otherwise."""

    def statistics_fixed(self) -> bool:
        """torch's rule for using the running statistics: eval mode, and running statistics kept."""
        return not self.training and self.running_mean is not None and self.running_var is not None

    def forward(self, input):
        if self.statistics_fixed():
            return input  # already normalised by the convolution before this layer
        return super().forward(input)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", folded into the preceding conv in eval"


class FoldedBatchNorm1d(_Folded, BatchNorm1d):
    __doc__ = _Folded.__doc__


class FoldedBatchNorm2d(_Folded, BatchNorm2d):
    __doc__ = _Folded.__doc__


class FoldedBatchNorm3d(_Folded, BatchNorm3d):
    __doc__ = _Folded.__doc__


# The BatchNorm each convolution folds (torch's, or medkern's where patch swapped it), and what it becomes.
FOLDED = {torch.nn.BatchNorm1d: FoldedBatchNorm1d, torch.nn.BatchNorm2d: FoldedBatchNorm2d,
          torch.nn.BatchNorm3d: FoldedBatchNorm3d, BatchNorm1d: FoldedBatchNorm1d, BatchNorm2d: FoldedBatchNorm2d,
          BatchNorm3d: FoldedBatchNorm3d}


def fold_batchnorm(weight, bias, gamma, beta, mean, var, eps: float, dtype):
    """(weight * s, (bias - mean) * s + beta) with s = gamma / sqrt(var + eps), per output channel (dim 0 of
    weight), computed in ``dtype``; gamma and beta may be None (an affine-free BatchNorm), as may bias."""
    scale = torch.rsqrt(var.to(dtype) + eps)
    shift = -mean.to(dtype) * scale
    if gamma is not None:
        scale, shift = scale * gamma.to(dtype), shift * gamma.to(dtype) + beta.to(dtype)
    folded_bias = shift if bias is None else bias.to(dtype) * scale + shift
    return weight.to(dtype) * scale.view(-1, *(1,) * (weight.dim() - 1)), folded_bias


def _fold(weight, bias, bn: _Folded, dtype):
    return fold_batchnorm(weight, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps, dtype)


def folded_weights(conv, bn: _Folded, weight, bias):
    """The convolution's weight and bias with ``bn`` folded in. Where no gradient is wanted they are folded
    in float64, cast once, and kept on the convolution until a tensor they were made from changes; where one
    is (eval-mode gradients, a saliency map through the weights) they are folded by differentiable ops."""
    tensors = [t for t in (weight, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var) if t is not None]
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return _fold(weight, bias, bn, weight.dtype)
    # The tensors themselves (not their ids, which a new tensor may reuse) and their version counters.
    key = (bn.eps, weight.dtype, [(t, t._version) for t in tensors])
    cached = conv.__dict__.get("_folded")
    if cached is None or not _same(cached[0], key):
        # Normal tensors even when first asked under inference_mode: a later call whose input wants a
        # gradient (a saliency map) saves them for its backward, which inference tensors cannot be.
        with torch.inference_mode(False), torch.no_grad():
            w, b = _fold(weight.detach(), None if bias is None else bias.detach(), bn, torch.float64)
            cached = conv.__dict__["_folded"] = (key, w.to(weight.dtype), b.to(weight.dtype))
    return cached[1], cached[2]


def _same(a, b) -> bool:
    return (a[0] == b[0] and a[1] == b[1] and len(a[2]) == len(b[2])
            and all(t is u and v == w for (t, v), (u, w) in zip(a[2], b[2])))

"""Training graphs on medkern's kernels: AOTAutograd hands the backend a forward and a backward graph of ATen ops;
in both, the convolutions (``aten.convolution`` forward, ``aten.convolution_backward`` backward: 2-d and 3-d, not
transposed, float32/float64) and the batch normalisations with batch statistics (``_native_batch_norm_legit_
functional`` forward, ``native_batch_norm_backward``) become calls of medkern's kernels. The tensors the
backward reads are the ones the forward saved either way (a convolution's input and weight; a BatchNorm's input,
mean and inverse standard deviation), so each graph is rewritten on its own."""
from __future__ import annotations

import torch
from torch import fx

from ..ops.conv import _forward, _grad_bias, _grad_input, _grad_weight
from ..ops.norm import _backward as _batch_norm_backward, _train as _batch_norm_train

aten = torch.ops.aten
_FLOATS = (torch.float32, torch.float64)


def _padding(padding) -> list[int]:
    """ATen's symmetric padding as medkern's leading-then-trailing list."""
    return [*padding, *padding]


def medkern_convolution(x, weight, bias, stride, padding, dilation, groups):
    return _forward(x, weight, bias, list(stride), _padding(padding), list(dilation), groups)


def medkern_convolution_backward(grad_output, x, weight, stride, padding, dilation, groups, output_mask):
    """``aten.convolution_backward``'s (grad_input, grad_weight, grad_bias), None where the mask says so."""
    geometry = (list(stride), _padding(padding), list(dilation), groups)
    return (_grad_input(grad_output, weight, list(x.shape), *geometry) if output_mask[0] else None,
            _grad_weight(grad_output, x, list(weight.shape), *geometry) if output_mask[1] else None,
            _grad_bias(grad_output) if output_mask[2] else None)


def medkern_batch_norm(x, weight, bias, running_mean, running_var, momentum, eps):
    """``_native_batch_norm_legit_functional`` in training: (output, mean, invstd, new running mean, new running
    var), the running statistics by torch's rule (the variance made unbiased)."""
    out, mean, invstd, var = _batch_norm_train(x, weight, bias, eps, 0, 0.0)
    count = x.numel() // x.shape[1]
    new_mean = running_mean * (1 - momentum) + mean * momentum
    new_var = running_var * (1 - momentum) + var * (momentum * count / (count - 1))
    return out, mean, invstd, new_mean, new_var


def medkern_batch_norm_backward(grad_output, x, weight, mean, invstd, eps, output_mask):
    grad_input, grad_weight, grad_bias = _batch_norm_backward(grad_output, x, None, mean, invstd, weight, eps, 0, 0.0)
    return (grad_input if output_mask[0] else None, grad_weight if output_mask[1] and weight is not None else None,
            grad_bias if output_mask[2] else None)


def _float(node) -> bool:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return val is not None and val.dtype in _FLOATS and val.dim() in (4, 5)


def _replace(gm: fx.GraphModule, node: fx.Node, target, args) -> None:
    with gm.graph.inserting_after(node):
        new = gm.graph.call_function(target, args)
    new.meta.update(node.meta)
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)


def _convolution(gm, node) -> bool:
    x, weight, bias, stride, padding, dilation, transposed, _output_padding, groups = node.args
    if transposed or not _float(x):
        return False
    _replace(gm, node, medkern_convolution, (x, weight, bias, stride, padding, dilation, groups))
    return True


def _convolution_backward(gm, node) -> bool:
    grad, x, weight, _bias_sizes, stride, padding, dilation, transposed, _output_padding, groups, mask = node.args
    if transposed or not _float(x):
        return False
    _replace(gm, node, medkern_convolution_backward, (grad, x, weight, stride, padding, dilation, groups, mask))
    return True


def _batch_norm(gm, node) -> bool:
    x, weight, bias, running_mean, running_var, training, momentum, eps = node.args
    if not training or not _float(x):
        return False
    _replace(gm, node, medkern_batch_norm, (x, weight, bias, running_mean, running_var, momentum, eps))
    return True


def _batch_norm_backward_node(gm, node) -> bool:
    grad, x, weight, _running_mean, _running_var, mean, invstd, training, eps, mask = node.args
    if not training or not _float(x) or mean is None or invstd is None:
        return False
    _replace(gm, node, medkern_batch_norm_backward, (grad, x, weight, mean, invstd, eps, mask))
    return True


_REWRITES = {aten.convolution.default: _convolution, aten.convolution_backward.default: _convolution_backward,
             aten._native_batch_norm_legit_functional.default: _batch_norm,
             aten.native_batch_norm_backward.default: _batch_norm_backward_node}


def use_medkern_kernels(gm: fx.GraphModule) -> int:
    """Rewrites a forward or backward graph in place; returns how many nodes now run medkern's kernels."""
    done = sum(rewrite(gm, node) for node in list(gm.graph.nodes)
               if (rewrite := _REWRITES.get(node.target)) is not None)
    gm.graph.lint()
    gm.recompile()
    return done

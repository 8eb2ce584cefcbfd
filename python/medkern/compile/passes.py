"""Graph passes on a captured inference graph (ATen ops, as AOTAutograd hands them over): each convolution
takes over the BatchNorm after it (folded into its weights), a residual add and a ReLU/LeakyReLU after
that, and a BatchNorm (and ReLU) before it that nothing else reads (pre-activation networks: DenseNet),
applied as it reads its input; it runs as one :class:`FusedConv` node. A 2-d transposed convolution takes over
the BatchNorm and the activation after it and runs as one :class:`FusedConvTranspose` node. Everything else stays
as it was, so every graph compiles."""
from __future__ import annotations

import operator

import torch
from torch import fx

from .._geometry import ACTIVATIONS
from .fused_conv import ConvEpilogue, FusedConv
from .fused_conv_transpose import FusedConvTranspose, runs_on_phases

aten = torch.ops.aten
# medkern's convolution ops (a model with medkern's layers: ``medkern.patch``) by their spatial rank.
_MEDKERN_CONVS = {torch.ops.medkern.conv2d.default: 2, torch.ops.medkern.conv3d.default: 3}
_BATCH_NORM = aten._native_batch_norm_legit_no_training.default
_FLOATS = (torch.float32, torch.float64)


def _value(node):
    return node.meta.get("val") if isinstance(node, fx.Node) else None


def _only_user(node: fx.Node):
    return next(iter(node.users)) if len(node.users) == 1 else None


def _convolution_args(node: fx.Node):
    """(x, weight, bias, stride, padding, dilation, groups, (activation, slope) already fused or None) of a
    convolution the fused node serves, else None: ATen's (1-d, 2-d and 3-d, not transposed) and medkern's own,
    float32/float64 (the kernels' types)."""
    if node.target is aten.convolution.default:
        x, weight, bias, stride, padding, dilation, transposed, _output_padding, groups = node.args
        fused = None
    elif node.target in _MEDKERN_CONVS:
        x, weight, bias, stride, pads, dilation, groups, code, slope = (list(node.args) + [0, 0.0])[:9]
        d = _MEDKERN_CONVS[node.target]
        if list(pads[:d]) != list(pads[d:]):
            return None  # asymmetric padding ('same' with an even kernel): the fused node pads symmetrically
        transposed, padding = False, pads[:d]
        fused = None if code == 0 else ({v: k for k, v in ACTIVATIONS.items()}[code], float(slope))
    else:
        return None
    val = _value(node)
    if transposed or val is None or val.dtype not in _FLOATS or val.dim() not in (3, 4, 5):
        return None
    if not all(isinstance(v, int) for v in (*stride, *padding, *dilation, groups)):
        return None  # symbolic geometry: leave it to torch
    return x, weight, bias, stride, padding, dilation, groups, fused


def _batch_norm_after(node: fx.Node):
    """(output node, (gamma, beta, mean, var), eps) when node's only use is a BatchNorm with fixed statistics
    whose other outputs are unused, else None."""
    bn = _only_user(node)
    if bn is None or bn.target is not _BATCH_NORM or bn.args[0] is not node:
        return None
    out = _only_user(bn)
    if out is None or out.target is not operator.getitem or out.args[1] != 0:
        return None
    _x, gamma, beta, mean, var, _momentum, eps = bn.args
    return out, (gamma, beta, mean, var), float(eps)


def _batch_norm_before(conv: fx.Node, x: fx.Node):
    """(nodes, input, (gamma, beta, mean, var), eps, relu) when x, the convolution's input, is relu(bn(input))
    or bn(input) read by nothing else, else None."""
    relu = x.target is aten.relu.default and len(x.users) == 1
    out = x.args[0] if relu else x
    if not isinstance(out, fx.Node) or out.target is not operator.getitem or out.args[1] != 0 or len(out.users) != 1:
        return None
    bn = out.args[0]
    if bn.target is not _BATCH_NORM or len(bn.users) != 1 or (not relu and _only_user(x) is not conv):
        return None
    source, gamma, beta, mean, var, _momentum, eps = bn.args
    return [bn, out] + ([x] if relu else []), source, (gamma, beta, mean, var), float(eps), relu


def _residual_after(node: fx.Node):
    """(add node, the other operand) for ``node + other`` of node's shape and dtype, else None."""
    add = _only_user(node)
    if add is None or add.target is not aten.add.Tensor or add.kwargs.get("alpha", 1) != 1 or len(add.args) != 2:
        return None
    other = add.args[1] if add.args[0] is node else add.args[0]
    if other is node or not isinstance(other, fx.Node):
        return None
    mine, theirs = _value(node), _value(other)
    if theirs is None or tuple(theirs.shape) != tuple(mine.shape) or theirs.dtype != mine.dtype:
        return None
    return add, other


def _activation_after(node: fx.Node):
    """(activation node, name, slope) for a ReLU or a LeakyReLU with a slope >= 0 on node, else None."""
    act = _only_user(node)
    if act is None or act.args[0] is not node:
        return None
    if act.target is aten.relu.default:
        return act, "relu", 0.0
    if act.target is aten.leaky_relu.default:
        slope = act.args[1] if len(act.args) > 1 else 0.01
        if isinstance(slope, (int, float)) and slope >= 0:
            return act, "leaky_relu", float(slope)
    return None


def _transposed_convolution_args(node: fx.Node):
    """(x, weight, bias, stride, padding, output_padding) of a 2-d transposed ATen convolution of one group and
    dilation 1, float32/float64, whose phases the forward kernels run with packed sub-kernels (FusedConvTranspose,
    runs_on_phases); else None."""
    if node.target is not aten.convolution.default or not node.args[6]:
        return None
    x, weight, bias, stride, padding, dilation, _transposed, output_padding, groups = node.args
    val, xv, wv = _value(node), _value(x), _value(weight)
    if val is None or xv is None or wv is None or val.dtype not in _FLOATS or val.dim() != 4:
        return None
    if groups != 1 or any(d != 1 for d in dilation) or \
            not all(isinstance(v, int) for v in (*stride, *padding, *output_padding, *xv.shape, *wv.shape)):
        return None
    if not runs_on_phases(xv.shape, wv.shape, stride, padding, output_padding, val.dtype == torch.float64):
        return None
    return x, weight, bias, stride, padding, output_padding


def _epilogue_after(node: fx.Node, residual: bool):
    """What follows node and folds into its output pass: a BatchNorm, then (where ``residual``) an add, then a
    ReLU/LeakyReLU. Returns (their nodes, the last node, BatchNorm tensors, eps, the add's other operand,
    activation, slope)."""
    nodes, tail = [], node
    bn_tensors, eps, other, activation, slope = (None,) * 4, None, None, "none", 0.0
    found = _batch_norm_after(tail)
    if found:
        tail, bn_tensors, eps = found
        nodes += [tail.args[0], tail]
    found = _residual_after(tail) if residual else None
    if found:
        tail, other = found
        nodes.append(tail)
    found = _activation_after(tail)
    if found:
        tail, activation, slope = found
        nodes.append(tail)
    return nodes, tail, bn_tensors, eps, other, activation, slope


def _replace(gm: fx.GraphModule, chain: list, tail: fx.Node, run, args: tuple, order: dict) -> None:
    """One call of ``run`` on ``args`` in place of the nodes of ``chain``, whose result ``tail`` was."""
    with gm.graph.inserting_after(tail):
        new = gm.graph.call_function(run, args)
    new.meta["val"] = _value(tail)
    tail.replace_all_uses_with(new)
    for old in sorted(chain, key=order.__getitem__, reverse=True):  # users before what they use
        gm.graph.erase_node(old)


def fuse_transposed_convolutions(gm: fx.GraphModule) -> int:
    """Rewrites gm in place (transposed convolutions, with the BatchNorm and activation after them); returns how
    many became fused nodes."""
    fused = 0
    order = {n: i for i, n in enumerate(gm.graph.nodes)}  # a chain's nodes are all original ones
    for node in list(gm.graph.nodes):
        found = _transposed_convolution_args(node)
        if found is None:
            continue
        x, weight, bias, stride, padding, output_padding = found
        nodes, tail, bn_tensors, eps, _, activation, slope = _epilogue_after(node, residual=False)
        run = FusedConvTranspose(stride, padding, output_padding, eps, activation, slope)
        _replace(gm, [node, *nodes], tail, run, (x, weight, bias, *bn_tensors), order)
        fused += 1
    gm.graph.lint()
    gm.recompile()
    return fused


def fuse_convolutions(gm: fx.GraphModule) -> int:
    """Rewrites gm in place; returns how many convolutions became fused nodes."""
    fused = 0
    order = {n: i for i, n in enumerate(gm.graph.nodes)}  # a chain's nodes are all original ones
    for node in list(gm.graph.nodes):
        conv_args = _convolution_args(node)
        if conv_args is None:
            continue
        x, weight, bias, stride, padding, dilation, groups, fused_activation = conv_args
        chain, tail = [node], node
        before = _batch_norm_before(node, x)
        in_tensors, in_eps, in_relu = (None,) * 4, None, False
        if before:
            nodes, x, in_tensors, in_eps, in_relu = before
            chain += nodes
        bn_tensors, eps, residual = (None,) * 4, None, None
        activation, slope = fused_activation or ("none", 0.0)
        if fused_activation is None:  # an activation already applied ends what can follow
            nodes, tail, bn_tensors, eps, residual, activation, slope = _epilogue_after(node, residual=True)
            chain += nodes
        run = FusedConv(stride, padding, dilation, groups, ConvEpilogue(eps, activation, slope, in_eps, in_relu))
        _replace(gm, chain, tail, run, (x, weight, bias, *bn_tensors, residual, *in_tensors), order)
        fused += 1
    gm.graph.lint()
    gm.recompile()
    return fused

"""Pooling in an inference graph on medkern's kernels: ATen's max pooling always writes the indices too (a
second output nobody reads at inference, and the slower kernel), average pooling has medkern's equivalent."""
from __future__ import annotations

import operator

import torch
from torch import fx

from ..ops.pool import _avg_forward, _max_values

aten = torch.ops.aten
_FLOATS = (torch.float32, torch.float64)


def _pair(value, default):
    """ATen's int[2] arguments: two values, one for both, or empty (the default)."""
    value = list(value) if value else list(default)
    return value * 2 if len(value) == 1 else value


def medkern_max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    return _max_values(x, kernel, stride, padding, dilation, ceil_mode)


def medkern_avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    return _avg_forward(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _served(node) -> bool:
    val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    return val is not None and val.dim() == 4 and val.dtype in _FLOATS


def _max_pool(node: fx.Node, gm: fx.GraphModule) -> bool:
    values = [u for u in node.users if u.target is operator.getitem and u.args[1] == 0]
    if len(values) != 1 or len(node.users) != 1:
        return False  # the indices are used
    x, kernel, *rest = node.args
    stride, padding, dilation, ceil_mode = (list(rest) + [None] * 4)[:4]
    kernel = _pair(kernel, ())
    args = (x, kernel, _pair(stride, kernel), _pair(padding, (0,)), _pair(dilation, (1,)), bool(ceil_mode))
    with gm.graph.inserting_after(node):
        new = gm.graph.call_function(medkern_max_pool2d, args)
    new.meta["val"] = values[0].meta.get("val")
    values[0].replace_all_uses_with(new)
    gm.graph.erase_node(values[0])
    gm.graph.erase_node(node)
    return True


def _avg_pool(node: fx.Node, gm: fx.GraphModule) -> bool:
    x, kernel, *rest = node.args
    stride, padding, ceil_mode, count_include_pad, divisor_override = (list(rest) + [None, None, False, True, None][len(rest):])[:5]
    kernel = _pair(kernel, ())
    args = (x, kernel, _pair(stride, kernel), _pair(padding, (0,)), bool(ceil_mode), bool(count_include_pad),
            divisor_override)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_function(medkern_avg_pool2d, args)
    new.meta["val"] = node.meta.get("val")
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return True


_REWRITES = {aten.max_pool2d_with_indices.default: _max_pool, aten.avg_pool2d.default: _avg_pool}


def use_medkern_pooling(gm: fx.GraphModule) -> int:
    """Rewrites gm in place; returns how many pooling nodes now run on medkern's kernels."""
    done = 0
    for node in list(gm.graph.nodes):
        rewrite = _REWRITES.get(node.target)
        if rewrite is not None and _served(node) and rewrite(node, gm):
            done += 1
    gm.graph.lint()
    gm.recompile()
    return done

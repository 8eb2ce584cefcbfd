"""Recurrent layers in an inference graph: ``medkern::rnn_scan`` returns each step's states and gates for a
backward pass beside the layer's outputs; where the graph reads only the outputs, the node becomes a direct call
of the recurrence that saves nothing (``medkern.ops.rnn.rnn_scan_inference``)."""
from __future__ import annotations

import operator

import torch
from torch import fx

from ..ops.rnn import rnn_scan_inference

_OUTPUTS = 3  # out, h_n, c_n: what rnn_scan_inference returns of rnn_scan's seven


def lean_recurrences(gm: fx.GraphModule) -> int:
    """Turns gm's rnn_scan nodes whose saved tensors nothing reads into rnn_scan_inference calls; returns how
    many."""
    changed = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.medkern.rnn_scan.default:
            continue
        if all(u.op == "call_function" and u.target is operator.getitem and u.args[1] < _OUTPUTS for u in node.users):
            node.target = rnn_scan_inference
            changed += 1
    if changed:
        gm.recompile()
    return changed
